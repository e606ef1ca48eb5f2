/* -*- c++ -*- -------------------------------------------------------------
   localcond: the one place where fix localcond calls Python.

   A PythonSession wraps localcond.engine.fix_bridge.FixSession. Every method is
   collective over the fix's communicator and agrees on failure: when any
   rank fails, every rank stops with error->all and the message of the lowest
   rank that failed by itself (so a Python driver under mpirun gets the
   exception on every rank, and the message always reaches screen and log).
------------------------------------------------------------------------- */

#ifndef LOCALCOND_PYTHON_SESSION_H
#define LOCALCOND_PYTHON_SESSION_H

#include "pointers.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

struct _object;
typedef struct _object PyObject;

namespace LocalCond {

// A named buffer handed to Python as a writable memoryview (no copy).
struct ArrayView {
  const char *name;
  void *data;
  size_t bytes;
};

// What the fix tells the Python side once: its keywords go as the words of the
// fix line after the types list, which Python validates against the one option
// schema (python/localcond/engine/options.py).
struct SessionSettings {
  std::string model_file;
  std::vector<std::string> type_species;    // per type; "NULL" = excluded
  std::string group;
  std::vector<std::string> keywords;    // the words after the types list
};

// The option schema as Python publishes it: keyword names and the usage line.
struct KeywordSchema {
  std::vector<std::string> names;
  std::string usage;
};

// What the model, the type map and the validated keywords give the fix (read by name).
struct ModelLayout {
  double cutoff = 0.0, inner_cutoff = 0.0, receptive_field = 0.0;    // Å: outputs' edges, other nodes'
  int n_layers = 1;
  int n_species = 0;
  std::vector<int> type_node;    // per type 1..ntypes: model species index, -1 = excluded
  std::vector<double> type_charge;
  std::string summary;    // for the log
  std::string neighbors;      // auto, lammps or binning
  bool molecules = false;     // a mapped atom is a molecular ion's centre with its molecule's charge
  std::string file_prefix;    // empty: no files
  int write_every = 0;        // evaluations between file writes (0: at the end of each run)
  double corr_rmax = 0.0;     // spatial correlation up to RMAX in corr_bins bins (0: off)
  int corr_bins = 0;
  bool eh_on = false;    // live Einstein-Helfand: positions and charges go to the statistics
};

// The names of the fix's global vector f_ID[1..10], in order (FixSession.vector's keys).
constexpr int N_VECTOR = 10;    // f_ID[1..10]
extern const char *const VECTOR_NAMES[N_VECTOR];

class PythonSession : protected LAMMPS_NS::Pointers {
 public:
  explicit PythonSession(LAMMPS_NS::LAMMPS *lmp);
  ~PythonSession() override;
  PythonSession(const PythonSession &) = delete;
  PythonSession &operator=(const PythonSession &) = delete;

  // Start Python if needed and read the fix's keyword schema (names, usage line).
  KeywordSchema keywords(int ntypes);
  // Start Python if needed, validate the keywords, load and check the model, map the types.
  ModelLayout open(const SessionSettings &settings);
  // The model on this rank's nodes (local work); fills out[0..n_local). Returns the model's seconds.
  double evaluate(LAMMPS_NS::bigint step, std::vector<int64_t> &species, std::vector<int64_t> &edge_index,
                  std::vector<double> &edge_vec, std::vector<int64_t> &ids, int n_local, std::vector<double> &out);
  // The statistics (collective); the returned text holds notes for the log (empty when none).
  std::string observe(LAMMPS_NS::bigint step, double dt_ps, int nevery, const char *phase,
                      const std::string &moved, const std::vector<ArrayView> &arrays);
  // Every type's lowest and highest charge (all ranks) against its species' charge (collective).
  void check_charges(const std::vector<double> &q_min, const std::vector<double> &q_max);
  // Every type's lowest and highest mass (all ranks) and the run's fix styles against the
  // model's training dynamics (collective); returns the warning to log (empty when none).
  std::string check_dynamics(const std::vector<double> &mass_min, const std::vector<double> &mass_max,
                             const std::vector<std::string> &fix_styles);
  // The fix's global values after the last observe (local to the rank: no communication).
  void vector(double *values);
  void write(LAMMPS_NS::bigint step);
  std::string state();
  void restore(const char *data, size_t nbytes);

 private:
  PyObject *session;
  // error->all on every rank when any rank's `problem` is not empty
  void agree(const std::string &problem, const std::string &what);
};

}    // namespace LocalCond

#endif
