/* -*- c++ -*- -------------------------------------------------------------
   localcond: embedded Python interpreter used by fix localcond.

   The fix never talks to torch directly: it hands plain arrays to the
   localcond Python runtime (python/localcond/engine/fix_bridge.py), the same code
   that evaluates models offline and in ASE.
------------------------------------------------------------------------- */

#ifndef LOCALCOND_PYTHON_RUNTIME_H
#define LOCALCOND_PYTHON_RUNTIME_H

#include <string>

// Forward declaration so that users of this header need not include Python.h.
struct _object;
typedef struct _object PyObject;

namespace LocalCond {

// Start the interpreter if this process has none (standalone `lmp`), using the
// Python of the virtual environment that holds the plugin. Safe to call many
// times. Returns an empty string on success, else a description of the failure.
std::string ensure_python();

// Holds the GIL for the lifetime of the object.
class GilLock {
 public:
  GilLock();
  ~GilLock();
  GilLock(const GilLock &) = delete;
  GilLock &operator=(const GilLock &) = delete;

 private:
  int state;
};

// Fetch, format ("ExceptionType: message") and clear the pending Python error.
// Must be called with the GIL held.
std::string take_python_error();

// Which Python executable the embedded interpreter was (or would be) started from,
// and why; for the log.
std::string python_origin();

}    // namespace LocalCond

#endif
