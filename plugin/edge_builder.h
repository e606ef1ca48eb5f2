/* -*- c++ -*- -------------------------------------------------------------
   localcond: edge lists in the model contract's layout.

   Nodes are the model's graph nodes (owned atoms, and ghost atoms owned by
   other ranks); an edge (i, j) with vector r_j - r_i joins a center i to a
   neighbor j closer than the model cutoff, j possibly a periodic image. Two builders fill the same structure: from a LAMMPS full
   neighbor list (in graph_adaptor.cpp) or by binning the nodes here, which
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

// Points binned into cells at least `cutoff` wide, coordinates copied in cell
// order so that the search walks memory in order.
class CellList {
 public:
  CellList(const std::vector<double> &pos, double cutoff);
  // visit(i, j, dx, dy, dz, rsq) for every center point i (point_center[i] != 0)
  // and every other point j with |pos[j] - pos[i]|^2 < cutoff^2; (dx, dy, dz) = pos[j] - pos[i]
  template <class Visit> void for_each_pair(const std::vector<char> &point_center, Visit &&visit) const;

 private:
  double cutsq, lo[3], scale[3];
  int64_t nbin[3];
  std::vector<int64_t> start, order;    // points of cell c: order[start[c] .. start[c+1])
  std::vector<double> sorted;           // coordinates in that order
  int64_t bin(const double *x, int d) const;
};

// What a point's edges are: none, within the inner cutoff (nodes other than the
// outputs, multi-layer models), within the cutoff (the output nodes).
constexpr char INNER_CENTER = 1, OUTPUT_CENTER = 2;

// Cell-list search over points (point k at pos[3k..3k+2], model node
// point_node[k]): an edge (point_node[i], point_node[j]) with vector
// pos[j] - pos[i] for every center point i (point_center[i] != 0) and every
// other point j closer than cutoff (OUTPUT_CENTER) or inner_cutoff
// (INNER_CENTER; inner_cutoff <= cutoff). Several points may share a node
// (periodic images of one atom); an atom's own image is a neighbor like any other.
void build_edges_binned(const std::vector<double> &pos, const std::vector<int64_t> &point_node,
                        const std::vector<char> &point_center, double cutoff, double inner_cutoff,
                        EdgeList &edges);

inline int64_t CellList::bin(const double *x, int d) const
{
  const int64_t b = static_cast<int64_t>((x[d] - lo[d]) * scale[d]);
  return b < 0 ? 0 : (b >= nbin[d] ? nbin[d] - 1 : b);
}

template <class Visit> void CellList::for_each_pair(const std::vector<char> &point_center, Visit &&visit) const
{
  const int64_t ncell = nbin[0] * nbin[1] * nbin[2];
  for (int64_t c = 0; c < ncell; ++c) {
    const int64_t cx = c % nbin[0], cy = (c / nbin[0]) % nbin[1], cz = c / (nbin[0] * nbin[1]);
    for (int64_t s = start[c]; s < start[c + 1]; ++s) {
      const int64_t i = order[s];
      if (!point_center[i]) continue;
      const double xi = sorted[3 * s], yi = sorted[3 * s + 1], zi = sorted[3 * s + 2];
      for (int64_t z = (cz > 0 ? cz - 1 : 0); z <= (cz + 1 < nbin[2] ? cz + 1 : nbin[2] - 1); ++z)
        for (int64_t y = (cy > 0 ? cy - 1 : 0); y <= (cy + 1 < nbin[1] ? cy + 1 : nbin[1] - 1); ++y) {
          const int64_t row = (z * nbin[1] + y) * nbin[0];
          const int64_t first = start[row + (cx > 0 ? cx - 1 : 0)];
          const int64_t last = start[row + (cx + 1 < nbin[0] ? cx + 1 : nbin[0] - 1) + 1];
          for (int64_t t = first; t < last; ++t) {    // three cells adjacent in memory
            if (t == s) continue;
            const double dx = sorted[3 * t] - xi, dy = sorted[3 * t + 1] - yi, dz = sorted[3 * t + 2] - zi;
            const double rsq = dx * dx + dy * dy + dz * dz;
            if (rsq < cutsq) visit(i, order[t], dx, dy, dz, rsq);
          }
        }
    }
  }
}

}    // namespace LocalCond

#endif
