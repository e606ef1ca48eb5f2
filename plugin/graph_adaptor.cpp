/* -------------------------------------------------------------------------
   localcond: LAMMPS atoms to model nodes and edges (see graph_adaptor.h)
------------------------------------------------------------------------- */

#include "graph_adaptor.h"

#include "neigh_list.h"

using namespace LAMMPS_NS;

namespace LocalCond {

GraphAdaptor::GraphAdaptor(const GraphSettings &settings) : settings(settings), n_outputs(0) {}

/* ----------------------------------------------------------------------
   Graph nodes: owned atoms of mapped types in the group (the outputs), other
   owned atoms of mapped types, then ghost atoms of mapped types owned by other
   ranks. A ghost that is a periodic image of an atom this rank owns is not a
   node of its own: its edges lead to the owned atom (with the image's vector),
   so the graph is the periodic one, and a single rank needs no ghost nodes.
   Edges start at the output atoms (one-layer models) or at every owned atom
   and every non-image ghost (message passing needs their neighborhoods): those
   of the outputs within the model's cutoff, the others' within its inner cutoff.
------------------------------------------------------------------------- */

void GraphAdaptor::collect_nodes(const AtomArrays &atoms)
{
  const int nlocal = atoms.nlocal;
  const int nall = nlocal + atoms.nghost;
  const int *type = atoms.type;
  const int *amask = atoms.mask;
  const tagint *tag = atoms.tag;
  const std::vector<int> &type_node = settings.type_node;
  const int groupbit = settings.groupbit;
  const int n_layers = settings.n_layers;

  node_of_atom.assign(nall, -1);
  center_of_atom.assign(nall, 0);
  atom_of_node.clear();
  auto add = [&](int i) {
    node_of_atom[i] = (int) atom_of_node.size();
    atom_of_node.push_back(i);
  };
  for (int i = 0; i < nlocal; ++i)
    if ((amask[i] & groupbit) && type_node[type[i]] >= 0) add(i);
  n_outputs = (int) atom_of_node.size();
  for (int i = 0; i < nlocal; ++i)
    if (!(amask[i] & groupbit) && type_node[type[i]] >= 0) add(i);
  // OUTPUT_CENTER: edges within the cutoff; INNER_CENTER: within the inner cutoff
  for (int i = 0; i < nlocal; ++i)
    if (node_of_atom[i] >= 0)
      center_of_atom[i] = node_of_atom[i] < n_outputs ? OUTPUT_CENTER : (n_layers > 1 ? INNER_CENTER : 0);

  owned.clear();
  for (int i = 0; i < nlocal; ++i)
    if (node_of_atom[i] >= 0) owned[tag[i]] = i;
  for (int i = nlocal; i < nall; ++i) {
    if (type_node[type[i]] < 0) continue;
    auto it = owned.find(tag[i]);
    if (it != owned.end()) {
      node_of_atom[i] = node_of_atom[it->second];    // image of an owned atom
    } else {
      add(i);
      center_of_atom[i] = (n_layers > 1) ? INNER_CENTER : 0;
    }
  }

  const int n_nodes = (int) atom_of_node.size();
  node_species.resize(n_nodes);
  node_ids.resize(n_nodes);
  for (int k = 0; k < n_nodes; ++k) {
    const int i = atom_of_node[k];
    node_species[k] = type_node[type[i]];
    node_ids[k] = tag[i];
  }
}

/* ----------------------------------------------------------------------
   Edges from LAMMPS's full list: its rows are the owned atoms, then (lists
   requested with ghost neighbors, multi-layer models) the ghosts; the list
   reaches past the model cutoff, so each pair is checked against it.
------------------------------------------------------------------------- */

void GraphAdaptor::edges_from_list(const AtomArrays &atoms, const NeighList *list)
{
  edges.clear();
  double **x = atoms.x;
  const double cutsq[3] = {0.0, settings.inner_cutoff * settings.inner_cutoff, settings.cutoff * settings.cutoff};
  const int nrows = list->inum + (settings.n_layers > 1 ? list->gnum : 0);
  for (int ii = 0; ii < nrows; ++ii) {
    const int i = list->ilist[ii];
    if (!center_of_atom[i]) continue;
    const int ni = node_of_atom[i];
    const int *jlist = list->firstneigh[i];
    for (int jj = 0; jj < list->numneigh[i]; ++jj) {
      const int j = jlist[jj] & NEIGHMASK;
      const int nj = node_of_atom[j];
      if (nj < 0) continue;
      const double dx = x[j][0] - x[i][0];
      const double dy = x[j][1] - x[i][1];
      const double dz = x[j][2] - x[i][2];
      if (dx * dx + dy * dy + dz * dz < cutsq[(int) center_of_atom[i]]) edges.add(ni, nj, dx, dy, dz);
    }
  }
  edges.finalize();
}

/* ----------------------------------------------------------------------
   Edges by binning: every mapped atom, owned or ghost, is a point of its
   node (periodic images of an owned atom are points of that atom's node).
------------------------------------------------------------------------- */

void GraphAdaptor::edges_by_binning(const AtomArrays &atoms)
{
  double **x = atoms.x;
  const int nall = atoms.nlocal + atoms.nghost;
  point_pos.clear();
  point_node.clear();
  point_center.clear();
  for (int i = 0; i < nall; ++i) {
    if (node_of_atom[i] < 0) continue;
    point_pos.insert(point_pos.end(), {x[i][0], x[i][1], x[i][2]});
    point_node.push_back(node_of_atom[i]);
    point_center.push_back(center_of_atom[i]);
  }
  build_edges_binned(point_pos, point_node, point_center, settings.cutoff, settings.inner_cutoff, edges);
}

/* ----------------------------------------------------------------------
   Bytes held by the node and edge buffers (the owned-atom map not counted)
------------------------------------------------------------------------- */

double GraphAdaptor::memory_usage() const
{
  double bytes = (double) (node_of_atom.capacity() + atom_of_node.capacity()) * sizeof(int);
  bytes += (double) (center_of_atom.capacity() + point_center.capacity());
  bytes += (double) (node_species.capacity() + node_ids.capacity() + point_node.capacity()) *
      sizeof(int64_t);
  bytes += (double) (point_pos.capacity() + edges.vec.capacity()) * sizeof(double);
  bytes += (double) (edges.index.capacity() + edges.center.capacity() + edges.neighbor.capacity()) *
      sizeof(int64_t);
  return bytes;
}

}    // namespace LocalCond
