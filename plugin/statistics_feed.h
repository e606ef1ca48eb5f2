/* -*- c++ -*- -------------------------------------------------------------
   localcond: what the live statistics need from LAMMPS beyond the model's
   outputs.

   A StatisticsFeed fills the buffers the fix hands to Python after each
   evaluation: the unwrapped positions and charges of the evaluated ions (live
   Einstein-Helfand, 'eh') and the pair sums of the spatial correlation of
   lambda ('corr'), from a LAMMPS half neighbor list or by binning here. Which
   statistic uses what is decided on the Python side
   (python/localcond/engine/reducers/).
------------------------------------------------------------------------- */

#ifndef LOCALCOND_STATISTICS_FEED_H
#define LOCALCOND_STATISTICS_FEED_H

#include "lmptype.h"

#include "graph_adaptor.h"

#include <cstdint>
#include <vector>

namespace LAMMPS_NS {
class Domain;
class NeighList;
}    // namespace LAMMPS_NS

namespace LocalCond {

// The spatial correlation's settings (corr RMAX NBINS) and which atoms take part.
struct CorrelationSettings {
  std::vector<int> type_node;    // per type 1..ntypes: model species index, -1 = not mapped
  int groupbit = 0;              // the fix's group: only its atoms pair
  int n_species = 0;             // the model's species
  double rmax = 0.0;             // Å
  int bins = 0;
};

class StatisticsFeed {
 public:
  explicit StatisticsFeed(const CorrelationSettings &corr);

  // Unwrapped positions (Å, [n_out][3]) and charges of the evaluated ions, node order;
  // and the box (eh_cell: rows a, b, c in Å; eh_pbc: 1 per periodic dimension), from
  // which Python refuses an ion that moves half the box between evaluations.
  void unwrap(const GraphAdaptor &graph, LAMMPS_NS::Domain *domain, double **x,
              const LAMMPS_NS::imageint *image, const double *q);
  // The pair sums, by binning the mapped atoms of the group here (lambda of
  // ghosts must be current) ...
  void correlation_sums(const AtomArrays &atoms, const GraphAdaptor &graph, const double *lambda);
  // ... or from a LAMMPS half list covering RMAX (newton: LAMMPS's newton_pair).
  void correlation_sums_from_list(const AtomArrays &atoms, const LAMMPS_NS::NeighList *list,
                                  bool newton, const double *lambda);

  std::vector<double> eh_pos, eh_charge;    // for 'eh'
  double eh_cell[9] = {0.0};                // for 'eh': the cell's rows (Å)
  double eh_pbc[3] = {0.0};                 // ... and its periodic dimensions (1.0 / 0.0)
  std::vector<double> pair_sums;            // for 'corr': [4][S][S][bins]

 private:
  CorrelationSettings corr;
  std::vector<double> pair_pos;     // binning: the points, ...
  std::vector<char> pair_center;    // ... which are evaluated here, ...
  std::vector<int> pair_atom;       // ... and their atoms
  // list path, per local+ghost atom: species (-1: unmapped or not in the group)
  std::vector<int> corr_species;

  // one ordered pair: species, lambda of each, distance^2 (< RMAX^2)
  inline void add_pair(int si, int sj, double li, double lj, double rsq);
};

}    // namespace LocalCond

#endif
