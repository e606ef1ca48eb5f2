/* -*- c++ -*- -------------------------------------------------------------
   localcond: from LAMMPS's atoms to the model's graph.

   A GraphAdaptor turns this rank's owned and ghost atoms into the model's
   nodes (species, atom IDs) and edges (EdgeList, see edge_builder.h), and
   remembers which atom each node stands for, so that the fix can put the
   model's outputs back on atoms. Its inputs are explicit (AtomArrays per
   evaluation, GraphSettings once): the fix keeps the LAMMPS glue, and a node
   that is not one atom (a molecular ion) changes this file only.
------------------------------------------------------------------------- */

#ifndef LOCALCOND_GRAPH_ADAPTOR_H
#define LOCALCOND_GRAPH_ADAPTOR_H

#include "lmptype.h"

#include "edge_builder.h"

#include <cstdint>
#include <unordered_map>
#include <vector>

namespace LAMMPS_NS {
class NeighList;
}

namespace LocalCond {

// This rank's atoms as LAMMPS holds them: owned atoms [0, nlocal), then ghost
// atoms [nlocal, nlocal + nghost). The pointers are LAMMPS's own and move when
// its arrays grow, so a view is taken afresh for each evaluation.
struct AtomArrays {
  double **x;
  const int *type;
  const int *mask;
  const LAMMPS_NS::tagint *tag;
  int nlocal, nghost;
};

// What the model and the fix's options say about the graph; fixed for a run.
struct GraphSettings {
  std::vector<int> type_node;    // per type 1..ntypes: model species index, -1 = not a node
  int groupbit = 0;              // the fix's group: its owned atoms are the outputs
  double cutoff = 0.0;           // model cutoff, Å: edges of the output nodes
  double inner_cutoff = 0.0;     // Å: edges of every other node (multi-layer models; <= cutoff)
  int n_layers = 1;              // > 1: message passing needs the ghosts' neighborhoods too
};

class GraphAdaptor {
 public:
  explicit GraphAdaptor(const GraphSettings &settings);

  // Nodes of this evaluation; fills node_species, node_ids, atom_of_node.
  void collect_nodes(const AtomArrays &atoms);
  // Edges of the nodes collected last, from a LAMMPS full neighbor list (with
  // ghost rows for multi-layer models) or by binning the atoms here.
  void edges_from_list(const AtomArrays &atoms, const LAMMPS_NS::NeighList *list);
  void edges_by_binning(const AtomArrays &atoms);

  // Outputs: nodes [0, n_out) are the evaluated ions (owned, in the group, mapped).
  int n_out() const { return n_outputs; }
  // Whether atom i is an evaluated ion (an owned atom of the first n_out nodes).
  bool is_output(int i, int nlocal) const
  {
    return i < nlocal && node_of_atom[i] >= 0 && node_of_atom[i] < n_outputs;
  }
  double memory_usage() const;

  // The model's inputs, per node (handed to Python as writable buffers).
  std::vector<int64_t> node_species, node_ids;
  std::vector<int> atom_of_node;    // the atom that defines each node
  EdgeList edges;

 private:
  GraphSettings settings;
  int n_outputs;

  // work buffers reused between evaluations
  std::vector<int> node_of_atom;       // per local+ghost atom: model node, -1 = not mapped
  std::vector<char> center_of_atom;    // per local+ghost atom: 0, INNER_CENTER or OUTPUT_CENTER
  std::unordered_map<LAMMPS_NS::tagint, int> owned;    // atom ID -> owned atom index
  std::vector<double> point_pos;    // binning: mapped local+ghost atoms
  std::vector<int64_t> point_node;
  std::vector<char> point_center;
};

}    // namespace LocalCond

#endif
