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
  if (!PyErr_Occurred()) PyDict_SetItemString(dict, key, value);    // an earlier failure stands
  Py_DECREF(value);
}

const char OTHER_RANK_FAILED[] = "FailedElsewhere";

// A word of the input as Python text: the bytes as the file system would take them (UTF-8,
// with any other byte kept by surrogateescape), so a file name round-trips exactly.
PyObject *text(const std::string &word)
{
  return PyUnicode_DecodeFSDefaultAndSize(word.data(), (Py_ssize_t) word.size());
}

PyObject *string_list(const std::vector<std::string> &words, bool null_is_none)
{
  PyObject *list = PyList_New(0);
  for (const auto &word : words) {
    PyObject *item = (null_is_none && word == "NULL") ? (Py_INCREF(Py_None), Py_None) : text(word);
    if (!item) {    // the error stays set: the call that would take the list is not made
      Py_DECREF(list);
      return nullptr;
    }
    PyList_Append(list, item);
    Py_DECREF(item);
  }
  return list;
}

PyObject *float_list(const std::vector<double> &values)
{
  PyObject *list = PyList_New(0);
  for (double v : values) {
    PyObject *item = PyFloat_FromDouble(v);
    PyList_Append(list, item);
    Py_DECREF(item);
  }
  return list;
}

// obj.method(**kwargs), stealing the reference to kwargs; not made when a Python error is
// already set (an argument that could not be converted), which then stays set
PyObject *call_named(PyObject *obj, const char *method, PyObject *kwargs)
{
  if (PyErr_Occurred()) {
    Py_XDECREF(kwargs);
    return nullptr;
  }
  PyObject *function = PyObject_GetAttrString(obj, method);
  PyObject *args = PyTuple_New(0);
  PyObject *result = (function && kwargs) ? PyObject_Call(function, args, kwargs) : nullptr;
  Py_XDECREF(args);
  Py_XDECREF(function);
  Py_XDECREF(kwargs);
  return result;
}

// localcond.engine.fix_bridge.<function>(**kwargs), stealing the reference to kwargs
PyObject *call_bridge(const char *function, PyObject *kwargs)
{
  PyObject *module = PyErr_Occurred() ? nullptr : PyImport_ImportModule("localcond.engine.fix_bridge");
  PyObject *result = module ? call_named(module, function, kwargs) : (Py_XDECREF(kwargs), nullptr);
  Py_XDECREF(module);
  return result;
}

// A field of a result dictionary (borrowed); sets a Python error naming it when missing.
PyObject *field(PyObject *dict, const char *name, const char *what)
{
  if (!dict || !PyDict_Check(dict)) {
    if (!PyErr_Occurred()) PyErr_Format(PyExc_TypeError, "%s returned something other than a dict", what);
    return nullptr;
  }
  PyObject *value = PyDict_GetItemString(dict, name);
  if (!value && !PyErr_Occurred()) PyErr_Format(PyExc_KeyError, "%s gave no '%s'", what, name);
  return value;
}

double field_double(PyObject *dict, const char *name, const char *what)
{
  PyObject *value = field(dict, name, what);
  return value ? PyFloat_AsDouble(value) : 0.0;
}

long field_long(PyObject *dict, const char *name, const char *what)
{
  PyObject *value = field(dict, name, what);
  return value ? PyLong_AsLong(value) : 0;
}

std::string field_string(PyObject *dict, const char *name, const char *what)
{
  PyObject *value = field(dict, name, what);
  const char *text = value ? PyUnicode_AsUTF8(value) : nullptr;
  return text ? text : "";
}

}    // namespace

const char *const LocalCond::VECTOR_NAMES[N_VECTOR] = {
    "group_mean",      "count",           "lambda_pred",    "lambda_pred_stderr", "lambda_std",
    "lambda_eh",       "lambda_eh_stderr", "eh_share_first", "pred_share_first", "model_uncertainty"};

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

KeywordSchema PythonSession::keywords(int ntypes)
{
  agree(ensure_python(), "cannot start Python");
  KeywordSchema schema;
  std::string problem;
  {
    GilLock gil;
    PyObject *kwargs = PyDict_New();
    set_item(kwargs, "ntypes", PyLong_FromLong(ntypes));
    PyObject *result = call_bridge("keywords", kwargs);
    const char *what = "fix_bridge.keywords";
    PyObject *names = field(result, "names", what);
    if (names && PyList_Check(names))
      for (Py_ssize_t k = 0; k < PyList_Size(names); ++k) {
        const char *text = PyUnicode_AsUTF8(PyList_GetItem(names, k));
        if (text) schema.names.emplace_back(text);
      }
    if (result) schema.usage = field_string(result, "usage", what);
    Py_XDECREF(result);
    if (PyErr_Occurred() || !result) problem = take_python_error();
  }
  agree(problem, "cannot read the option schema");
  return schema;
}

/* ---------------------------------------------------------------------- */

ModelLayout PythonSession::open(const SessionSettings &s)
{
  agree(ensure_python(), "cannot start Python");
  ModelLayout layout;
  std::string problem;
  {
    GilLock gil;
    PyObject *kwargs = PyDict_New();
    set_item(kwargs, "model_path", text(s.model_file));
    set_item(kwargs, "type_species", string_list(s.type_species, true));
    set_item(kwargs, "keywords", string_list(s.keywords, false));
    set_item(kwargs, "group", text(s.group));
    set_item(kwargs, "nprocs", PyLong_FromLong(comm->nprocs));
    set_item(kwargs, "comm_handle", PyLong_FromLong((long) MPI_Comm_c2f(world)));
    session = call_bridge("open_session", kwargs);
    PyObject *result = session ? PyObject_CallMethod(session, "layout", nullptr) : nullptr;
    if (result) {
      const char *what = "FixSession.layout";
      layout.cutoff = field_double(result, "cutoff", what);
      layout.inner_cutoff = field_double(result, "inner_cutoff", what);
      layout.receptive_field = field_double(result, "receptive_field", what);
      layout.n_layers = (int) field_long(result, "n_layers", what);
      layout.n_species = (int) field_long(result, "n_species", what);
      layout.summary = field_string(result, "summary", what);
      layout.neighbors = field_string(result, "neighbors", what);
      layout.file_prefix = field_string(result, "file", what);
      layout.write_every = (int) field_long(result, "every", what);
      layout.corr_rmax = field_double(result, "corr_rmax", what);
      layout.corr_bins = (int) field_long(result, "corr_bins", what);
      PyObject *eh = field(result, "eh", what);
      layout.eh_on = eh && PyObject_IsTrue(eh) == 1;
      PyObject *molecules = field(result, "molecules", what);
      layout.molecules = molecules && PyObject_IsTrue(molecules) == 1;
      PyObject *nodes = field(result, "type_species_index", what);
      PyObject *charges = field(result, "type_charge", what);
      if (nodes && charges && PyList_Check(nodes) && PyList_Check(charges)) {
        const Py_ssize_t ntypes = PyList_Size(nodes);
        layout.type_node.assign(ntypes + 1, -1);
        layout.type_charge.assign(ntypes + 1, 0.0);
        for (Py_ssize_t t = 1; t <= ntypes && t <= PyList_Size(charges); ++t) {
          layout.type_node[t] = (int) PyLong_AsLong(PyList_GetItem(nodes, t - 1));
          layout.type_charge[t] = PyFloat_AsDouble(PyList_GetItem(charges, t - 1));
        }
      }
    }
    Py_XDECREF(result);
    if (PyErr_Occurred() || !session || !result) {
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
    PyObject *kwargs = PyDict_New();
    set_item(kwargs, "step", PyLong_FromLongLong((long long) step));
    set_item(kwargs, "species", view(species.data(), species.size() * sizeof(int64_t)));
    set_item(kwargs, "edge_index", view(edge_index.data(), edge_index.size() * sizeof(int64_t)));
    set_item(kwargs, "edge_vec", view(edge_vec.data(), edge_vec.size() * sizeof(double)));
    set_item(kwargs, "ids", view(ids.data(), ids.size() * sizeof(int64_t)));
    set_item(kwargs, "n_local", PyLong_FromLong(n_local));
    set_item(kwargs, "out", view(out.data(), out.size() * sizeof(double)));
    PyObject *result = call_named(session, "evaluate", kwargs);
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
    PyObject *kwargs = PyDict_New();
    set_item(kwargs, "step", PyLong_FromLongLong((long long) step));
    set_item(kwargs, "dt_ps", PyFloat_FromDouble(dt_ps));
    set_item(kwargs, "nevery", PyLong_FromLong(nevery));
    set_item(kwargs, "phase", PyUnicode_FromString(phase));
    set_item(kwargs, "moved", moved.empty() ? (Py_INCREF(Py_None), Py_None) : text(moved));
    set_item(kwargs, "views", views);
    PyObject *result = call_named(session, "observe", kwargs);
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

void PythonSession::check_charges(const std::vector<double> &q_min, const std::vector<double> &q_max)
{
  std::string problem;
  {
    GilLock gil;
    PyObject *kwargs = PyDict_New();
    set_item(kwargs, "q_min", float_list(q_min));
    set_item(kwargs, "q_max", float_list(q_max));
    PyObject *result = call_named(session, "check_charges", kwargs);
    Py_XDECREF(result);
    if (PyErr_Occurred() || !result) problem = take_python_error();
  }
  agree(problem, "");
}

std::string PythonSession::check_dynamics(const std::vector<double> &mass_min, const std::vector<double> &mass_max,
                                          const std::vector<std::string> &fix_styles)
{
  std::string problem, note;
  {
    GilLock gil;
    PyObject *kwargs = PyDict_New();
    set_item(kwargs, "mass_min", float_list(mass_min));
    set_item(kwargs, "mass_max", float_list(mass_max));
    set_item(kwargs, "fix_styles", string_list(fix_styles, false));
    PyObject *result = call_named(session, "check_dynamics", kwargs);
    const char *out = (result && PyUnicode_Check(result)) ? PyUnicode_AsUTF8(result) : nullptr;
    if (out) note = out;
    Py_XDECREF(result);
    if (PyErr_Occurred() || !result) problem = take_python_error();
  }
  agree(problem, "");
  return note;
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
    if (result)
      for (int k = 0; k < N_VECTOR && !PyErr_Occurred(); ++k)
        values[k] = field_double(result, VECTOR_NAMES[k], "FixSession.vector");
    Py_XDECREF(result);
    if (PyErr_Occurred() || !result) problem = take_python_error();
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
