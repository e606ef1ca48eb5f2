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

void build_edges_binned(const std::vector<double> &pos, const std::vector<int64_t> &point_node,
                        const std::vector<char> &point_center, double cutoff, EdgeList &edges)
{
  edges.clear();
  const int64_t n_points = static_cast<int64_t>(point_node.size());
  if (n_points == 0) {
    edges.finalize();
    return;
  }

  double lo[3], hi[3];
  for (int d = 0; d < 3; ++d) lo[d] = hi[d] = pos[d];
  for (int64_t k = 1; k < n_points; ++k)
    for (int d = 0; d < 3; ++d) {
      lo[d] = std::min(lo[d], pos[3 * k + d]);
      hi[d] = std::max(hi[d], pos[3 * k + d]);
    }

  // Bins at least `cutoff` wide, so neighbors lie in the 27 surrounding bins.
  // Sparse systems get wider bins to keep the bin count O(n_points).
  double width = cutoff;
  int64_t nbin[3];
  for (;;) {
    int64_t total = 1;
    for (int d = 0; d < 3; ++d) {
      nbin[d] = std::max<int64_t>(1, static_cast<int64_t>((hi[d] - lo[d]) / width));
      total *= nbin[d];
    }
    if (total <= 8 * n_points + 27) break;
    width *= 1.5;
  }
  auto bin_of = [&](int64_t k, int d) {
    int64_t b = static_cast<int64_t>((pos[3 * k + d] - lo[d]) / (hi[d] - lo[d] + 1e-300) * nbin[d]);
    return std::min(std::max<int64_t>(b, 0), nbin[d] - 1);
  };

  // Counting sort of points into bins.
  const int64_t nbins = nbin[0] * nbin[1] * nbin[2];
  std::vector<int64_t> point_bin(n_points), start(nbins + 1, 0), sorted(n_points);
  for (int64_t k = 0; k < n_points; ++k) {
    point_bin[k] = (bin_of(k, 2) * nbin[1] + bin_of(k, 1)) * nbin[0] + bin_of(k, 0);
    ++start[point_bin[k] + 1];
  }
  for (int64_t b = 0; b < nbins; ++b) start[b + 1] += start[b];
  std::vector<int64_t> fill(start.begin(), start.end() - 1);
  for (int64_t k = 0; k < n_points; ++k) sorted[fill[point_bin[k]]++] = k;

  const double cutsq = cutoff * cutoff;
  for (int64_t i = 0; i < n_points; ++i) {
    if (!point_center[i]) continue;
    const int64_t bx = bin_of(i, 0), by = bin_of(i, 1), bz = bin_of(i, 2);
    const double xi = pos[3 * i], yi = pos[3 * i + 1], zi = pos[3 * i + 2];
    for (int64_t cz = std::max<int64_t>(bz - 1, 0); cz <= std::min(bz + 1, nbin[2] - 1); ++cz)
      for (int64_t cy = std::max<int64_t>(by - 1, 0); cy <= std::min(by + 1, nbin[1] - 1); ++cy)
        for (int64_t cx = std::max<int64_t>(bx - 1, 0); cx <= std::min(bx + 1, nbin[0] - 1);
             ++cx) {
          const int64_t b = (cz * nbin[1] + cy) * nbin[0] + cx;
          for (int64_t s = start[b]; s < start[b + 1]; ++s) {
            const int64_t j = sorted[s];
            if (j == i) continue;
            const double dx = pos[3 * j] - xi, dy = pos[3 * j + 1] - yi,
                         dz = pos[3 * j + 2] - zi;
            if (dx * dx + dy * dy + dz * dz < cutsq)
              edges.add(point_node[i], point_node[j], dx, dy, dz);
          }
        }
  }
  edges.finalize();
}

}    // namespace LocalCond
