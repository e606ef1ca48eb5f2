/* -------------------------------------------------------------------------
   localcond: glibc malloc settings (see malloc_tuning.h)
------------------------------------------------------------------------- */

#include "malloc_tuning.h"

#include <cstdlib>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace LocalCond {

std::string tune_malloc()
{
#if defined(__GLIBC__)
  const char *off = std::getenv("LOCALCOND_NO_MALLOPT");
  if (off && *off && std::string(off) != "0") return "glibc malloc left as is (LOCALCOND_NO_MALLOPT)";
  const int threshold = 1 << 30;
  if (mallopt(M_MMAP_THRESHOLD, threshold) && mallopt(M_TRIM_THRESHOLD, threshold))
    return "process-wide: glibc malloc now keeps freed blocks up to 1 GiB for reuse, for the model's "
           "repeated large tensors (LOCALCOND_NO_MALLOPT=1 leaves malloc as is)";
  // where this glibc refuses so large a threshold, a smaller one still keeps blocks below it in the heap
  const int fallback = 32 << 20;
  if (mallopt(M_MMAP_THRESHOLD, fallback) && mallopt(M_TRIM_THRESHOLD, fallback))
    return "process-wide: glibc malloc now keeps freed blocks up to 32 MiB for reuse, for the model's "
           "repeated large tensors (LOCALCOND_NO_MALLOPT=1 leaves malloc as is)";
#endif
  return "";
}

}    // namespace LocalCond
