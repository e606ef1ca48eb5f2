/* -------------------------------------------------------------------------
   localcond: edge lists by binning local + ghost nodes.
------------------------------------------------------------------------- */

#include "edge_builder.h"

#include <algorithm>
#include <cmath>

namespace LocalCond {

void EdgeList::finalize()
{
  const int64_t n = size();
  index.resize(2 * n);
  std::copy(center.begin(), center.end(), index.begin());
  std::copy(neighbor.begin(), neighbor.end(), index.begin() + n);
}

CellList::CellList(const std::vector<double> &pos, double cutoff) : cutsq(cutoff * cutoff)
{
  const int64_t n_points = static_cast<int64_t>(pos.size() / 3);
  for (int d = 0; d < 3; ++d) {
    lo[d] = n_points ? pos[d] : 0.0;
    double hi = lo[d];
    for (int64_t k = 1; k < n_points; ++k) {
      lo[d] = std::min(lo[d], pos[3 * k + d]);
      hi = std::max(hi, pos[3 * k + d]);
    }
    scale[d] = hi - lo[d];    // the extent for now
  }
  // Cells at least `cutoff` wide, so neighbors lie in the 27 surrounding cells.
  // Sparse systems get wider cells to keep the cell count O(n_points).
  double width = cutoff;
  for (;;) {
    int64_t total = 1;
    for (int d = 0; d < 3; ++d) {
      nbin[d] = std::max<int64_t>(1, static_cast<int64_t>(scale[d] / width));
      total *= nbin[d];
    }
    if (total <= 8 * n_points + 27) break;
    width *= 1.5;
  }
  for (int d = 0; d < 3; ++d) scale[d] = nbin[d] / (scale[d] + 1e-300);

  // counting sort of the points into cells, coordinates copied in that order
  const int64_t ncell = nbin[0] * nbin[1] * nbin[2];
  std::vector<int64_t> cell(n_points);
  start.assign(ncell + 1, 0);
  for (int64_t k = 0; k < n_points; ++k) {
    const double *x = &pos[3 * k];
    cell[k] = (bin(x, 2) * nbin[1] + bin(x, 1)) * nbin[0] + bin(x, 0);
    ++start[cell[k] + 1];
  }
  for (int64_t c = 0; c < ncell; ++c) start[c + 1] += start[c];
  std::vector<int64_t> fill(start.begin(), start.end() - 1);
  order.resize(n_points);
  sorted.resize(3 * n_points);
  for (int64_t k = 0; k < n_points; ++k) {
    const int64_t s = fill[cell[k]]++;
    order[s] = k;
    std::copy(&pos[3 * k], &pos[3 * k] + 3, &sorted[3 * s]);
  }
}

void build_edges_binned(const std::vector<double> &pos, const std::vector<int64_t> &point_node,
                        const std::vector<char> &point_center, double cutoff, double inner_cutoff,
                        EdgeList &edges)
{
  edges.clear();
  CellList cells(pos, cutoff);
  const double innersq = inner_cutoff * inner_cutoff;
  cells.for_each_pair(point_center, [&](int64_t i, int64_t j, double dx, double dy, double dz, double rsq) {
    if (point_center[i] == OUTPUT_CENTER || rsq < innersq) edges.add(point_node[i], point_node[j], dx, dy, dz);
  });
  edges.finalize();
}

}    // namespace LocalCond
