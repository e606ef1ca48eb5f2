/* -*- c++ -*- -------------------------------------------------------------
   localcond: edge lists in the model contract's layout.

   Nodes are the model's graph nodes (owned atoms, and ghost atoms owned by
   other ranks); an edge (i, j) with vector r_j - r_i joins a center i to a
   neighbor j closer than the model cutoff, j possibly a periodic image. Two builders fill the same structure: from a LAMMPS full
   neighbor list (in fix_localcond.cpp) or by binning the nodes here, which
   needs no pair style and supports cutoffs beyond the pair cutoff.
------------------------------------------------------------------------- */

#ifndef LOCALCOND_EDGE_BUILDER_H
#define LOCALCOND_EDGE_BUILDER_H

#include <cstdint>
#include <vector>

namespace LocalCond {

struct EdgeList {
  std::vector<int64_t> index;    // [2, n_edges] row-major: centers, then neighbors
  std::vector<int64_t> center, neighbor;
  std::vector<double> vec;    // [n_edges, 3], r_neighbor - r_center in Å

  void clear()
  {
    center.clear();
    neighbor.clear();
    vec.clear();
  }
  void add(int64_t i, int64_t j, double dx, double dy, double dz)
  {
    center.push_back(i);
    neighbor.push_back(j);
    vec.push_back(dx);
    vec.push_back(dy);
    vec.push_back(dz);
  }
  int64_t size() const { return static_cast<int64_t>(center.size()); }
  // Pack center/neighbor into the contiguous [2, n_edges] `index`.
  void finalize();
};

// Cell-list search over points (point k at pos[3k..3k+2], model node
// point_node[k]): an edge (point_node[i], point_node[j]) with vector
// pos[j] - pos[i] for every center point i (point_center[i] != 0) and every
// other point j closer than cutoff. Several points may share a node (periodic
// images of one atom); an atom's own image is a neighbor like any other.
void build_edges_binned(const std::vector<double> &pos, const std::vector<int64_t> &point_node,
                        const std::vector<char> &point_center, double cutoff, EdgeList &edges);

}    // namespace LocalCond

#endif
