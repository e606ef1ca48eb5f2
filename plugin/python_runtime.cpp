/* -------------------------------------------------------------------------
   localcond: embedded Python interpreter used by fix localcond.
------------------------------------------------------------------------- */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "python_runtime.h"

#include <cstdlib>
#include <dlfcn.h>
#include <mutex>
#include <string>
#include <sys/stat.h>

namespace {

std::string g_origin = "the Python process that drives LAMMPS";

bool is_file(const std::string &path)
{
  struct stat st;
  return !path.empty() && stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string parent_dir(const std::string &path)
{
  auto pos = path.find_last_of('/');
  if (pos == std::string::npos || pos == 0) return "/";
  return path.substr(0, pos);
}

// The venv python next to a directory holding pyvenv.cfg, or "".
std::string venv_python(const std::string &dir)
{
  if (!is_file(dir + "/pyvenv.cfg")) return "";
  for (const char *name : {"/bin/python3", "/bin/python"})
    if (is_file(dir + name)) return dir + name;
  return "";
}

// Path of this shared object, found from the address of a function in it.
std::string plugin_file()
{
  Dl_info info;
  if (dladdr(reinterpret_cast<void *>(&plugin_file), &info) && info.dli_fname)
    return info.dli_fname;
  return "";
}

// Choose the Python executable whose prefix (and so site-packages) the embedded
// interpreter uses, in this order: $LOCALCOND_PYTHON; the virtual environment
// containing the plugin file; $VIRTUAL_ENV; the Python the plugin was built with.
std::string choose_python(std::string &why)
{
  const char *env = std::getenv("LOCALCOND_PYTHON");
  if (env && *env) {
    why = "LOCALCOND_PYTHON";
    return env;
  }
  std::string dir = parent_dir(plugin_file());
  for (int up = 0; up < 8 && dir != "/"; ++up, dir = parent_dir(dir)) {
    std::string py = venv_python(dir);
    if (!py.empty()) {
      why = "virtual environment containing the plugin";
      return py;
    }
  }
  const char *venv = std::getenv("VIRTUAL_ENV");
  if (venv && *venv) {
    std::string py = venv_python(venv);
    if (!py.empty()) {
      why = "VIRTUAL_ENV";
      return py;
    }
  }
  why = "Python the plugin was built with";
  return LOCALCOND_BUILD_PYTHON;
}

std::once_flag g_init_once;
std::string g_init_error;

void start_interpreter()
{
  if (Py_IsInitialized()) return;    // LAMMPS driven from Python: reuse it

  std::string why;
  std::string python = choose_python(why);
  if (!is_file(python)) {
    g_init_error = "cannot start Python: executable '" + python + "' (from " + why +
        ") does not exist; set LOCALCOND_PYTHON to the python of the environment "
        "where localcond is installed";
    return;
  }
  g_origin = python + " (" + why + ")";

  PyConfig config;
  PyConfig_InitPythonConfig(&config);
  config.install_signal_handlers = 0;    // leave SIGINT & co. to LAMMPS/MPI
  config.parse_argv = 0;
  PyStatus status = PyConfig_SetBytesString(&config, &config.program_name, python.c_str());
  if (!PyStatus_Exception(status)) {
    char arg0[] = "lmp";
    char *argv[] = {arg0};
    status = PyConfig_SetBytesArgv(&config, 1, argv);
  }
  if (!PyStatus_Exception(status)) status = Py_InitializeFromConfig(&config);
  PyConfig_Clear(&config);
  if (PyStatus_Exception(status)) {
    g_init_error = std::string("cannot start Python from ") + python + ": " +
        (status.err_msg ? status.err_msg : "unknown error");
    return;
  }
  // Release the GIL taken by initialisation; every call re-acquires it with
  // PyGILState_Ensure. The interpreter is never finalized (torch does not
  // support re-initialisation and LAMMPS may create many fixes).
  PyEval_SaveThread();
}

}    // namespace

namespace LocalCond {

std::string ensure_python()
{
  std::call_once(g_init_once, start_interpreter);
  return g_init_error;
}

std::string python_origin()
{
  return g_origin;
}

GilLock::GilLock() : state(static_cast<int>(PyGILState_Ensure())) {}

GilLock::~GilLock()
{
  PyGILState_Release(static_cast<PyGILState_STATE>(state));
}

std::string take_python_error()
{
  PyObject *type = nullptr, *value = nullptr, *trace = nullptr;
  PyErr_Fetch(&type, &value, &trace);
  if (!type) return "unknown Python error";
  PyErr_NormalizeException(&type, &value, &trace);
  std::string text;
  PyObject *name = PyObject_GetAttrString(type, "__name__");
  if (name && PyUnicode_Check(name)) text = PyUnicode_AsUTF8(name);
  Py_XDECREF(name);
  PyObject *str = value ? PyObject_Str(value) : nullptr;
  if (str && PyUnicode_Check(str)) {
    // as bytes: a file name read with the file system's encoding may hold surrogates
    // (surrogateescape), which PyUnicode_AsUTF8 refuses; they become the original bytes
    PyObject *bytes = PyUnicode_AsEncodedString(str, "utf-8", "surrogateescape");
    if (!bytes) {
      PyErr_Clear();
      bytes = PyUnicode_AsEncodedString(str, "utf-8", "backslashreplace");
    }
    if (bytes && PyBytes_Size(bytes) > 0) text += std::string(": ") + PyBytes_AsString(bytes);
    Py_XDECREF(bytes);
  }
  PyErr_Clear();
  Py_XDECREF(str);
  PyErr_Clear();
  Py_XDECREF(type);
  Py_XDECREF(value);
  Py_XDECREF(trace);
  return text.empty() ? "unknown Python error" : text;
}

}    // namespace LocalCond
