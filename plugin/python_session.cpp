/* -------------------------------------------------------------------------
   localcond: the one place where fix localcond calls Python
   (see python_session.h and python/localcond/engine/fix_bridge.py).
------------------------------------------------------------------------- */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "python_session.h"

#include "python_runtime.h"

#include "comm.h"
#include "error.h"
#include "fmt/format.h"

#include <climits>

using namespace LAMMPS_NS;
using namespace LocalCond;

namespace {

// A writable memoryview over a C++ buffer (no copy; torch warns about read-only
// numpy arrays). Empty buffers get a valid pointer.
PyObject *view(void *data, size_t bytes)
{
  static char empty[8];
  if (bytes == 0) data = empty;
  return PyMemoryView_FromMemory(static_cast<char *>(data), static_cast<Py_ssize_t>(bytes), PyBUF_WRITE);
}

// dict[key] = value, stealing the reference to value
void set_item(PyObject *dict, const char *key, PyObject *value)
{
  if (!value) return;
  PyDict_SetItemString(dict, key, value);
  Py_DECREF(value);
}

const char OTHER_RANK_FAILED[] = "FailedElsewhere";

}    // namespace

PythonSession::PythonSession(LAMMPS *lmp) : Pointers(lmp), session(nullptr) {}

PythonSession::~PythonSession()
{
  if (session && Py_IsInitialized()) {
    GilLock gil;
    Py_DECREF(session);
  }
}

/* ----------------------------------------------------------------------
   Agree on a failure: the lowest rank that failed by itself (not merely
   because Python's own agreement reported another rank) sends its message
   to all, and every rank stops with it.
------------------------------------------------------------------------- */

void PythonSession::agree(const std::string &problem, const std::string &what)
{
  const int me = comm->me, nprocs = comm->nprocs;
  int mine = INT_MAX;
  if (!problem.empty()) mine = problem.rfind(OTHER_RANK_FAILED, 0) == 0 ? nprocs + me : me;
  int first = INT_MAX;
  MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, world);
  if (first == INT_MAX) return;
  const int root = first % nprocs;
  int length = (me == root) ? (int) problem.size() : 0;
  MPI_Bcast(&length, 1, MPI_INT, root, world);
  std::string message = (me == root) ? problem : std::string(length, ' ');
  MPI_Bcast(&message[0], length, MPI_CHAR, root, world);
  const std::string where = nprocs > 1 ? fmt::format(" (MPI rank {} of {})", root, nprocs) : "";
  if (what.empty())
    error->all(FLERR, "fix localcond: {}{}", message, where);
  else
    error->all(FLERR, "fix localcond: {}: {}{}", what, message, where);
}

/* ---------------------------------------------------------------------- */

ModelLayout PythonSession::open(const SessionSettings &s)
{
  agree(ensure_python(), "cannot start Python");
  ModelLayout layout;
  std::string problem;
  {
    GilLock gil;
    PyObject *module = PyImport_ImportModule("localcond.engine.fix_bridge");
    PyObject *names = PyList_New(0);
    for (const auto &name : s.type_species) {
      PyObject *item = (name == "NULL") ? (Py_INCREF(Py_None), Py_None) : PyUnicode_FromString(name.c_str());
      PyList_Append(names, item);
      Py_DECREF(item);
    }
    PyObject *settings = PyDict_New();
    set_item(settings, "group", PyUnicode_FromString(s.group.c_str()));
    if (!s.file_prefix.empty()) set_item(settings, "file", PyUnicode_FromString(s.file_prefix.c_str()));
    if (s.write_every > 0) set_item(settings, "every", PyLong_FromLong(s.write_every));
    for (const auto &option : s.reducers) {
      PyObject *value;
      if (option.second.size() == 1) {
        value = PyFloat_FromDouble(option.second[0]);
      } else {
        value = PyList_New(0);
        for (double v : option.second) {
          PyObject *item = PyFloat_FromDouble(v);
          PyList_Append(value, item);
          Py_DECREF(item);
        }
      }
      set_item(settings, option.first.c_str(), value);
    }
    if (module)
      session = PyObject_CallMethod(module, "open_session", "sOiiO", s.model_file.c_str(), names,
                                    comm->nprocs, (int) MPI_Comm_c2f(world), settings);
    Py_XDECREF(settings);
    Py_XDECREF(names);
    Py_XDECREF(module);
    PyObject *result = session ? PyObject_CallMethod(session, "layout", nullptr) : nullptr;
    if (result && PyTuple_Check(result) && PyTuple_Size(result) == 7) {
      layout.cutoff = PyFloat_AsDouble(PyTuple_GetItem(result, 0));
      layout.receptive_field = PyFloat_AsDouble(PyTuple_GetItem(result, 1));
      layout.n_layers = (int) PyLong_AsLong(PyTuple_GetItem(result, 2));
      PyObject *nodes = PyTuple_GetItem(result, 3), *charges = PyTuple_GetItem(result, 4);
      const Py_ssize_t ntypes = PyList_Size(nodes);
      layout.type_node.assign(ntypes + 1, -1);
      layout.type_charge.assign(ntypes + 1, 0.0);
      for (Py_ssize_t t = 1; t <= ntypes; ++t) {
        layout.type_node[t] = (int) PyLong_AsLong(PyList_GetItem(nodes, t - 1));
        layout.type_charge[t] = PyFloat_AsDouble(PyList_GetItem(charges, t - 1));
      }
      const char *text = PyUnicode_AsUTF8(PyTuple_GetItem(result, 5));
      if (text) layout.summary = text;
      layout.n_species = (int) PyLong_AsLong(PyTuple_GetItem(result, 6));
    }
    Py_XDECREF(result);
    if (PyErr_Occurred() || !session) {
      problem = take_python_error();
      Py_CLEAR(session);
    }
  }
  agree(problem, "");
  return layout;
}

/* ---------------------------------------------------------------------- */

double PythonSession::evaluate(bigint step, std::vector<int64_t> &species, std::vector<int64_t> &edge_index,
                               std::vector<double> &edge_vec, std::vector<int64_t> &ids, int n_local,
                               std::vector<double> &out)
{
  std::string problem;
  double seconds = 0.0;
  {
    GilLock gil;
    PyObject *result = PyObject_CallMethod(
        session, "evaluate", "LNNNNiN", (long long) step, view(species.data(), species.size() * sizeof(int64_t)),
        view(edge_index.data(), edge_index.size() * sizeof(int64_t)),
        view(edge_vec.data(), edge_vec.size() * sizeof(double)),
        view(ids.data(), ids.size() * sizeof(int64_t)), n_local,
        view(out.data(), out.size() * sizeof(double)));
    if (result) seconds = PyFloat_AsDouble(result);
    Py_XDECREF(result);
    if (PyErr_Occurred() || !result) problem = take_python_error();
  }
  agree(problem, fmt::format("model evaluation failed at step {}", step));
  return seconds;
}

/* ---------------------------------------------------------------------- */

std::string PythonSession::observe(bigint step, double dt_ps, int nevery, const char *phase,
                                   const std::string &moved, const std::vector<ArrayView> &arrays)
{
  std::string problem, notes;
  {
    GilLock gil;
    PyObject *views = PyDict_New();
    for (const auto &a : arrays) set_item(views, a.name, view(a.data, a.bytes));
    PyObject *why = moved.empty() ? (Py_INCREF(Py_None), Py_None) : PyUnicode_FromString(moved.c_str());
    PyObject *result = PyObject_CallMethod(session, "observe", "LdisNN", (long long) step, dt_ps, nevery, phase,
                                           why, views);
    const char *text = (result && PyUnicode_Check(result)) ? PyUnicode_AsUTF8(result) : nullptr;
    if (text) notes = text;
    const bool malformed = result && !PyErr_Occurred() && !PyUnicode_Check(result);
    Py_XDECREF(result);
    if (PyErr_Occurred() || !result) problem = take_python_error();
    if (malformed) problem = "FixSession.observe returned something other than a text";
  }
  agree(problem, fmt::format("the statistics failed at step {}", step));
  return notes;
}

/* ----------------------------------------------------------------------
   Local to this rank (LAMMPS may read a fix's global vector on some ranks
   only, e.g. from a Python driver on rank 0): a failure stops this rank
   with its message (error->one), never waits for the others.
------------------------------------------------------------------------- */

void PythonSession::vector(double *values)
{
  std::string problem;
  {
    GilLock gil;
    PyObject *result = PyObject_CallMethod(session, "vector", nullptr);
    const bool ok = result && PyTuple_Check(result) && PyTuple_Size(result) == 9;
    if (ok)
      for (int k = 0; k < 9; ++k) values[k] = PyFloat_AsDouble(PyTuple_GetItem(result, k));
    Py_XDECREF(result);
    if (PyErr_Occurred() || !result)
      problem = take_python_error();
    else if (!ok)
      problem = "FixSession.vector returned something other than 9 numbers";
  }
  if (!problem.empty()) error->one(FLERR, "fix localcond: computing its global vector failed: {}", problem);
}

/* ---------------------------------------------------------------------- */

void PythonSession::write(bigint step)
{
  std::string problem;
  {
    GilLock gil;
    PyObject *result = PyObject_CallMethod(session, "write", "L", (long long) step);
    Py_XDECREF(result);
    if (PyErr_Occurred() || !result) problem = take_python_error();
  }
  agree(problem, "writing the reducer files failed");
}

/* ---------------------------------------------------------------------- */

std::string PythonSession::state()
{
  std::string problem, bytes;
  {
    GilLock gil;
    PyObject *result = PyObject_CallMethod(session, "state_bytes", nullptr);
    if (result && PyBytes_Check(result)) bytes.assign(PyBytes_AsString(result), PyBytes_Size(result));
    Py_XDECREF(result);
    if (PyErr_Occurred() || !result) problem = take_python_error();
  }
  agree(problem, "saving the statistics for the restart file failed");
  return bytes;
}

/* ---------------------------------------------------------------------- */

void PythonSession::restore(const char *data, size_t nbytes)
{
  std::string problem;
  {
    GilLock gil;
    PyObject *result = PyObject_CallMethod(session, "restore", "y#", data, (Py_ssize_t) nbytes);
    Py_XDECREF(result);
    if (PyErr_Occurred() || !result) problem = take_python_error();
  }
  agree(problem, "cannot continue from the restart file");
}
