/* -------------------------------------------------------------------------
   localcond: inputs of the live statistics (see statistics_feed.h)
------------------------------------------------------------------------- */

#include "statistics_feed.h"

#include "domain.h"
#include "neigh_list.h"

#include <algorithm>
#include <cmath>

using namespace LAMMPS_NS;

namespace LocalCond {

StatisticsFeed::StatisticsFeed(const CorrelationSettings &corr) : corr(corr) {}

/* ----------------------------------------------------------------------
   Einstein-Helfand needs the ions' displacements across periodic boundaries:
   positions unwrapped with the image flags.
------------------------------------------------------------------------- */

void StatisticsFeed::unwrap(const GraphAdaptor &graph, Domain *domain, double **x,
                            const imageint *image, const double *q)
{
  const int n_out = graph.n_out();
  eh_pos.resize(3 * (size_t) n_out);
  eh_charge.resize(n_out);
  for (int k = 0; k < n_out; ++k) {
    const int i = graph.atom_of_node[k];
    domain->unmap(x[i], image[i], &eh_pos[3 * k]);
    eh_charge[k] = q[i];
  }
  const double tilt[3] = {domain->triclinic ? domain->xy : 0.0, domain->triclinic ? domain->xz : 0.0,
                          domain->triclinic ? domain->yz : 0.0};
  const double cell[9] = {domain->xprd, 0.0, 0.0, tilt[0], domain->yprd, 0.0, tilt[1], tilt[2], domain->zprd};
  std::copy(cell, cell + 9, eh_cell);
  for (int d = 0; d < 3; ++d) eh_pbc[d] = (d < domain->dimension && domain->periodicity[d]) ? 1.0 : 0.0;
}


/* ----------------------------------------------------------------------
   The spatial correlation's sums over ordered pairs (i owned and evaluated
   here, j any atom of the group with a mapped type, ghosts included) closer
   than corr RMAX: per (species of i, species of j, distance bin) the number of
   pairs, sum of lambda_i, of lambda_j and of lambda_i lambda_j, laid out
   [4][S][S][NBINS] as localcond.engine.reducers.spatial.PairCorrelation keeps them.
------------------------------------------------------------------------- */

void StatisticsFeed::add_pair(int si, int sj, double li, double lj, double rsq)
{
  const int64_t S = corr.n_species, bins = corr.bins, plane = S * S * bins;
  const double per_r = corr.bins / corr.rmax;    // as localcond.engine.reducers.spatial bins r
  const int64_t bin = static_cast<int64_t>(std::sqrt(rsq) * per_r);
  if (bin >= bins) return;
  const int64_t k = (si * S + sj) * bins + bin;
  pair_sums[k] += 1.0;
  pair_sums[plane + k] += li;
  pair_sums[2 * plane + k] += lj;
  pair_sums[3 * plane + k] += li * lj;
}

void StatisticsFeed::correlation_sums(const AtomArrays &atoms, const GraphAdaptor &graph, const double *lambda)
{
  double **x = atoms.x;
  const int *type = atoms.type;
  const int nlocal = atoms.nlocal;
  const int nall = nlocal + atoms.nghost;
  const int n_out = graph.n_out();
  const std::vector<int> &type_node = corr.type_node;
  // only ghosts within RMAX of an evaluated owned atom's bounding box can pair
  // with one (the model's ghost cutoff is often far longer than RMAX)
  double lo[3] = {INFINITY, INFINITY, INFINITY}, hi[3] = {-INFINITY, -INFINITY, -INFINITY};
  for (int k = 0; k < n_out; ++k)
    for (int d = 0; d < 3; ++d) {
      lo[d] = std::min(lo[d], x[graph.atom_of_node[k]][d] - corr.rmax);
      hi[d] = std::max(hi[d], x[graph.atom_of_node[k]][d] + corr.rmax);
    }
  pair_pos.clear();
  pair_center.clear();
  pair_atom.clear();
  for (int i = 0; i < nall; ++i) {
    if (!(atoms.mask[i] & corr.groupbit) || type_node[type[i]] < 0) continue;
    if (i >= nlocal && (x[i][0] < lo[0] || x[i][0] > hi[0] || x[i][1] < lo[1] || x[i][1] > hi[1] ||
                        x[i][2] < lo[2] || x[i][2] > hi[2]))
      continue;
    pair_pos.insert(pair_pos.end(), {x[i][0], x[i][1], x[i][2]});
    pair_center.push_back(graph.is_output(i, nlocal));
    pair_atom.push_back(i);
  }
  pair_sums.assign(4 * (size_t) corr.n_species * corr.n_species * corr.bins, 0.0);
  CellList cells(pair_pos, corr.rmax);
  cells.for_each_pair(pair_center, [&](int64_t i, int64_t j, double, double, double, double rsq) {
    const int a = pair_atom[i], b = pair_atom[j];
    add_pair(type_node[type[a]], type_node[type[b]], lambda[a], lambda[b], rsq);
  });
}

/* ----------------------------------------------------------------------
   The same sums from a LAMMPS half neighbor list (cutoff >= RMAX for every pair
   of mapped types). Each pair (i owned, j owned or ghost) of mapped atoms of the
   group gives i -> j (i is evaluated here: the owned atoms evaluated are exactly
   the owned ones of the group with a mapped type) and j -> i when j's side is
   on no other rank's list: j owned here, or a ghost with newton on (then the
   pair is in one list of one rank only). With newton off a pair with a ghost is
   in the lists of both ranks, and each adds its own atom's direction.
------------------------------------------------------------------------- */

void StatisticsFeed::correlation_sums_from_list(const AtomArrays &atoms, const NeighList *list,
                                                bool newton, const double *lambda)
{
  double **x = atoms.x;
  const int *type = atoms.type, *mask = atoms.mask;
  const int nlocal = atoms.nlocal, nall = nlocal + atoms.nghost;
  corr_species.resize(nall);    // species of a mapped atom of the group, else -1
  for (int i = 0; i < nall; ++i)
    corr_species[i] = (mask[i] & corr.groupbit) ? corr.type_node[type[i]] : -1;
  const double rmaxsq = corr.rmax * corr.rmax;
  pair_sums.assign(4 * (size_t) corr.n_species * corr.n_species * corr.bins, 0.0);
  for (int ii = 0; ii < list->inum; ++ii) {
    const int i = list->ilist[ii];
    const int si = corr_species[i];
    if (si < 0) continue;
    const double xi = x[i][0], yi = x[i][1], zi = x[i][2], li = lambda[i];
    const int *jlist = list->firstneigh[i];
    for (int jj = 0; jj < list->numneigh[i]; ++jj) {
      const int j = jlist[jj] & NEIGHMASK;
      const int sj = corr_species[j];
      if (sj < 0) continue;
      const double dx = x[j][0] - xi, dy = x[j][1] - yi, dz = x[j][2] - zi;
      const double rsq = dx * dx + dy * dy + dz * dz;
      if (rsq >= rmaxsq) continue;
      add_pair(si, sj, li, lambda[j], rsq);
      if (newton || j < nlocal) add_pair(sj, si, lambda[j], li, rsq);
    }
  }
}

}    // namespace LocalCond
