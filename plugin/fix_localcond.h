/* -*- c++ -*- -------------------------------------------------------------
   localcond: fix localcond — per-atom local molar conductivity from a
   TorchScript model evaluated every N steps through the localcond Python
   runtime. Documentation: doc/fix_localcond.rst.
------------------------------------------------------------------------- */

#ifndef LMP_FIX_LOCALCOND_H
#define LMP_FIX_LOCALCOND_H

#include "fix.h"

#include "edge_builder.h"

#include <string>
#include <unordered_map>
#include <vector>

struct _object;
typedef struct _object PyObject;

namespace LAMMPS_NS {

class FixLocalCond : public Fix {
 public:
  FixLocalCond(class LAMMPS *, int, char **);
  ~FixLocalCond() override;
  int setmask() override;
  void init() override;
  void init_list(int, class NeighList *) override;
  void setup(int) override;
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
  std::vector<double> type_charge;          // per type: the model's charge for its species
  double cutoff, receptive_field;
  int n_layers;
  int neighbor_mode;
  bool use_lammps_list;
  class NeighList *list;

  _object *session;    // localcond.fix_bridge.FixSession

  double *lambda;    // per-atom local molar conductivity, S cm^2/mol
  double group_mean;
  bigint group_count;
  double running[3];    // from the reducers: Lambda_pred, its standard error, std of lambda
  double live_eh[4];    // Lambda_EH at the longest lag, its error, species-1 shares of Lambda_EH and Lambda_pred
  std::string output_prefix;    // reducer files PREFIX.reduce.npz / PREFIX.summary.json
  int write_every;              // evaluations between writes (0: at the end of each run)
  double hist_lo, hist_hi;      // histogram of lambda (hist_bins = 0: off)
  int hist_bins;
  int tcorr_lags;    // time autocorrelation over this many evaluations (0: off)
  int eh_lags, eh_block;    // live Einstein-Helfand: lags (evaluations), origins per block (0: off)
  double eh_temperature;   // K, the thermostat's target
  std::vector<double> eh_pos, eh_charge;
  double corr_rmax;    // spatial correlation of lambda up to this distance (corr_bins = 0: off)
  int corr_bins;
  std::vector<double> pair_li, pair_lj, pair_r;    // pairs for the spatial correlation
  std::vector<int64_t> pair_si, pair_sj;

  // work buffers reused between evaluations
  std::vector<int> node_of_atom;       // per local+ghost atom: model node, -1 = not mapped
  std::vector<char> center_of_atom;    // per local+ghost atom: edges start here
  std::vector<int> atom_of_node;       // the atom that defines each node
  std::unordered_map<tagint, int> owned;    // atom ID -> owned atom index
  std::vector<int64_t> node_species, node_ids;
  std::vector<double> node_out;
  std::vector<double> point_pos;    // binning: mapped local+ghost atoms
  std::vector<int64_t> point_node;
  std::vector<char> point_center;
  LocalCond::EdgeList edges;

  // timing (seconds, this rank) for the post-run summary
  long n_calls;
  double t_edges, t_python, t_model, t_reduce;

  void parse_arguments(int, char **);
  void open_session();
  void check_charges();
  void check_ghost_cutoff();
  void check_group_has_ions();
  std::string mapped_types() const;
  void evaluate();
  void collect_nodes(int &n_out);
  void edges_from_list();
  void edges_by_binning();
  void correlation_pairs(int n_out);
  [[noreturn]] void python_failure(const std::string &what, bool on_all_ranks);
  void call_session(const char *method, const char *what, PyObject *args, double *out, int nout);
};

}    // namespace LAMMPS_NS

#endif
