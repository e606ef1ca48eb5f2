/* -*- c++ -*- -------------------------------------------------------------
   localcond: glibc malloc settings for the model's repeated allocations.

   The model allocates the same large tensors at every call. glibc serves
   blocks above its mmap threshold with fresh mmaps, so every call page-faults
   them in again: measured 45 ms instead of 25 ms for a 3-layer network on 4000
   ions. tune_malloc() keeps such blocks in the heap instead. The setting is
   process-wide (it affects LAMMPS and everything else in the process), so it
   is made once the fix has loaded its model, and logged; setting
   LOCALCOND_NO_MALLOPT (to anything but 0) leaves malloc as is.
------------------------------------------------------------------------- */

#ifndef LOCALCOND_MALLOC_TUNING_H
#define LOCALCOND_MALLOC_TUNING_H

#include <string>

namespace LocalCond {

// Raise glibc's mmap and trim thresholds (1 GiB, or 32 MiB where that fails).
// Returns a note for the log; empty where nothing was done (not glibc).
std::string tune_malloc();

}    // namespace LocalCond

#endif
