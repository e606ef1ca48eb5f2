/* -*- c++ -*- -------------------------------------------------------------
   localcond: fix localcond — per-atom local molar conductivity from a
   TorchScript model evaluated every N steps through the localcond Python
   runtime. Documentation: doc/fix_localcond.rst.

   This class is the LAMMPS glue (options, checks, scheduling, per-atom and
   restart storage, output). The rest lives beside it, as in LAMMPS's
   ML-METATOMIC package: graph_adaptor.h turns atoms into the model's nodes
   and edges, statistics_feed.h computes what the live statistics need beyond
   the model's output, python_session.h makes every call into Python, and
   malloc_tuning.h sets glibc malloc up for the model's allocations.
------------------------------------------------------------------------- */

#ifndef LMP_FIX_LOCALCOND_H
#define LMP_FIX_LOCALCOND_H

#include "fix.h"

#include "graph_adaptor.h"
#include "python_session.h"
#include "statistics_feed.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace LAMMPS_NS {

class FixLocalCond : public Fix {
 public:
  FixLocalCond(class LAMMPS *, int, char **);
  ~FixLocalCond() override;
  int setmask() override;
  void init() override;
  void init_list(int, class NeighList *) override;
  void setup(int) override;
  void min_setup(int) override;
  void end_of_step() override;
  void post_run() override;
  double compute_vector(int) override;
  void write_restart(FILE *) override;
  void restart(char *) override;
  double memory_usage() override;

  void grow_arrays(int) override;
  void copy_arrays(int, int, int) override;
  int pack_exchange(int, double *) override;
  int pack_forward_comm(int, int *, double *, int, int *) override;
  void unpack_forward_comm(int, int, double *) override;
  int unpack_exchange(int, double *) override;
  int pack_restart(int, double *) override;
  void unpack_restart(int, int) override;
  int size_restart(int) override;
  int maxsize_restart() override;

 private:
  enum NeighborMode { NEIGH_AUTO, NEIGH_LAMMPS, NEIGH_BINNING };

  std::string model_file;
  std::vector<std::string> type_species;    // per type 1..ntypes ("NULL" = excluded)
  std::vector<int> type_node;               // per type: model species index, -1 = excluded
  std::string neighbor_note;                // which neighbor path a run uses, and why (logged)
  std::string logged_neighbor_note;         // ... as last logged
  std::vector<double> type_charge;          // per type: the model's charge for its species
  double cutoff, inner_cutoff, receptive_field;    // Å: outputs' edges, other nodes' edges, reach
  int n_layers;
  int n_species;    // the model's species
  int neighbor_mode;
  bool use_lammps_list;
  bool remap_ghosts;    // a box-changing fix before this one remaps atoms at end_of_step
  class NeighList *list;         // full list for the model's edges (requested first)
  class NeighList *corr_list;    // half list for corr's pairs (requested second)
  int lists_given;               // init_list() calls since init()

  std::unique_ptr<LocalCond::PythonSession> session;    // all calls into Python

  double *lambda;    // per-atom local molar conductivity, S cm^2/mol
  double global[LocalCond::N_VECTOR];    // f_ID[1..10] (see compute_vector), from the statistics when read
  bool global_current;    // global[] holds the values after the last evaluation
  std::string output_prefix;    // reducer files PREFIX.reduce.npz / PREFIX.summary.json
  int write_every;              // evaluations between writes (0: at the end of each run)
  std::vector<std::string> keywords;    // the words after the types list, validated by Python
  bool eh_on;    // live Einstein-Helfand: positions and charges go to the statistics
  bool molecules;    // a mapped atom is a molecular ion's centre carrying its molecule's charge
  std::vector<double> molecule_charge;    // by molecule ID (0: none), summed over all ranks
  std::vector<double> ion_q;              // per local atom: its ion's charge (molecules)
  double corr_rmax;    // spatial correlation of lambda up to this distance, in corr_bins bins
  int corr_bins;
  bool corr_on;
  bool corr_from_list;    // the pairs from a LAMMPS half list (it covers RMAX), else binned here
  bigint last_setup_step;    // the step setup() evaluated (-1 after the first end_of_step)
  std::string moved_note;    // why atoms moved outside dynamics since the last evaluation

  // made by open_session() from the model's layout
  std::unique_ptr<LocalCond::GraphAdaptor> graph;    // atoms -> the model's nodes and edges
  std::unique_ptr<LocalCond::StatisticsFeed> feed;    // eh positions and charges, corr pair sums
  std::vector<double> node_out;    // the model's lambda per evaluated node

  // timing (seconds, this rank) for the post-run summary
  long n_calls;
  double t_edges, t_python, t_model, t_reduce;

  void parse_arguments(int, char **);
  void open_session();
  void check_charges();
  void check_dynamics();
  void sum_molecule_charges();
  const double *ion_charges();    // per local atom: the atom's charge, or its molecule's
  void check_ghost_cutoff();
  double ghost_reach(int type) const;
  void check_group_has_ions();
  void check_box_changing_fixes();
  std::string mapped_types() const;
  void evaluate();
  void observe(const char *phase);
  LocalCond::AtomArrays atom_arrays() const;    // this rank's atoms, for the adaptor and the feed
  // why LAMMPS's lists cannot give every pair of mapped atoms within `cut` ("" if they can)
  std::string list_unusable(double cut, const char *what) const;
};

}    // namespace LAMMPS_NS

#endif
