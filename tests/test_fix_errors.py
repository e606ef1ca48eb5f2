"""Bad input to fix localcond stops LAMMPS with a clear message, never a crash."""


import pytest
import torch

from helpers import System, run_lmp
from localcond.model.contract import METADATA_FILE
from localcond.model.export import save_model
from localcond.model.message_passing import make_untrained_model
from localcond.model.reference import make_reference_model

SPECIES, CHARGES = ["Li", "PF6"], [1.0, -1.0]


class NanForAnions(torch.nn.Module):
    def forward(self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor,
                n_local: int) -> torch.Tensor:
        out = torch.zeros(n_local, dtype=edge_vec.dtype)
        return torch.where(species[:n_local] == 1, torch.full_like(out, float("nan")), out)


class OneTooMany(torch.nn.Module):
    def forward(self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor,
                n_local: int) -> torch.Tensor:
        return torch.zeros(n_local + 1, dtype=edge_vec.dtype)


class Raises(torch.nn.Module):
    def forward(self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor,
                n_local: int) -> torch.Tensor:
        if edge_index.shape[1] > 0:
            raise RuntimeError("deliberate failure inside the model")
        return torch.zeros(n_local, dtype=edge_vec.dtype)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_models")
    module, metadata = make_reference_model(SPECIES, CHARGES, 6.0)
    out = {"ref": save_model(module, metadata, root / "ref.pt")}
    out["mp"] = save_model(
        *make_untrained_model(SPECIES, CHARGES, cutoff=4.0, n_layers=2, n_features=8,
                              dtype="float64"), root / "mp.pt")
    for name, cls in [("nan", NanForAnions), ("shape", OneTooMany), ("raises", Raises)]:
        path = root / f"{name}.pt"
        torch.jit.save(torch.jit.script(cls()), str(path),
                       _extra_files={METADATA_FILE: metadata.to_json()})
        out[name] = path
    out["junk"] = root / "junk.pt"
    out["junk"].write_bytes(b"this is not a model\n")
    out["plain"] = root / "plain.pt"
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(out["plain"]))
    out["dir"] = root
    out["missing"] = root / "missing.pt"
    return {k: str(v) for k, v in out.items()}


CASES = {
    "missing model file": (dict(model="missing"), "model file '{missing}' does not exist"),
    "model path is a directory": (dict(model="dir"), "is not a regular file"),
    "not TorchScript": (dict(model="junk"), "is not a TorchScript model (not a zip archive)"),
    "no metadata": (dict(model="plain"), "has no localcond metadata"),
    "too few types": (dict(types="Li"), "the system has 2 atom types but 1 names were given: Li"),
    "too many types": (dict(types="Li PF6 Li"), "the system has 2 atom types but 3 names"),
    "unknown species": (dict(types="Li Cl"), "atom type 2 is mapped to species 'Cl', which the model does not know"),
    "N zero": (dict(nevery_text="0"), "N (evaluate every N steps) must be a positive integer, got 0"),
    "N negative": (dict(nevery_text="-5"), "must be a positive integer, got -5"),
    "N not a number": (dict(nevery_text="ten"), "Expected integer parameter instead of 'ten'"),
    "ghost cutoff too small": (
        dict(model="mp", pair_cut=5.0),
        "the model's receptive field is 8 Å (2 layers x 4 Å cutoff) but ghost atoms reach only 5 Å",
    ),
    "ghost cutoff fix-it": (dict(model="mp", pair_cut=5.0), "add 'comm_modify cutoff 10'"),
    "no charges in atom style": (dict(atom_style="atomic"), "fix localcond needs per-atom charges"),
    "charges differ from the model": (
        dict(charges=(0.8, -0.8)),
        "atoms of type 1 (species Li) have charges from 0.8 to 0.8 e, but the model's species Li has charge 1 e",
    ),
    "NaN output": (
        dict(model="nan"),
        "model evaluation failed at step 0: ModelOutputError: model returned 30 non-finite "
        "value(s) (NaN/Inf) for atom IDs 31, 32, 33, 34, 35, ...",
    ),
    "wrong output shape": (dict(model="shape"), "model evaluation failed at step 0: ModelOutputError: model returned shape (61,), expected (60,)"),
    "exception inside the model": (
        dict(model="raises"),
        ["model evaluation failed at step 0: ModelEvaluationError: the model raised an error:",
         "RuntimeError: deliberate failure inside the model"],
    ),
    "LAMMPS list too short": (
        dict(pair_cut=5.0, comm_cutoff=9.0, fix_extra="neighbors lammps"),
        "cannot use the LAMMPS neighbor list ('neighbors lammps'): the pair cutoff between types 1 and 1 (5 Å) is shorter than the model cutoff (6 Å)",
    ),
    "LAMMPS list with exclusions": (
        dict(fix_extra="neighbors lammps", extra_commands=["neigh_modify exclude type 1 2"]),
        "cannot use the LAMMPS neighbor list ('neighbors lammps'): neigh_modify exclude removes pairs from the list",
    ),
    "charges changed during a run with eh": (
        dict(fix_extra="eh 5 4 298", steps=60, extra_commands=[
            "group first type 1", "variable q equal ramp(1.0,0.8)", "fix ad first adapt 10 atom charge v_q"]),
        "the charge of atom ID",
    ),
    "bad neighbors value": (dict(fix_extra="neighbors fast"), "neighbors must be auto, lammps or binning, got 'fast'"),
    "unknown keyword": (dict(fix_extra="neighbors auto sample 5"), "unknown keyword 'sample'"),
    "unknown keyword after the types": (
        dict(fix_extra="sample 5"),
        "but 4 names were given: Li PF6 sample 5; 'sample' is not a keyword of fix localcond "
        "(keywords: neighbors molecules file every hist tcorr corr eh)",
    ),
    "hist zero bins": (dict(fix_extra="hist -1 1 0"), "hist needs a positive number of bins, got 0"),
    "hist empty range": (dict(fix_extra="hist 1 1 10"), "hist needs HI > LO, got 1 1"),
    "tcorr zero lags": (dict(fix_extra="tcorr 0"), "tcorr needs a positive number of lags, got 0"),
    "corr zero bins": (dict(fix_extra="corr 5 0"), "corr needs a positive number of bins, got 0"),
    "eh negative lags": (dict(fix_extra="eh -2 10 298"), "eh needs positive NLAGS and BLOCK, got -2 10"),
    "eh without temperature": (dict(fix_extra="eh 10 10 0"), "eh needs the target temperature in K > 0"),
    "every zero": (dict(fix_extra="file red every 0"), "'every' (evaluations between file writes) must be a positive integer, got 0"),
    # the second review round: a keyword twice was accepted silently; a non-ASCII prefix wrote nothing, silently
    "keyword twice": (dict(fix_extra="hist -1 1 4 hist -2 2 8"), "keyword 'hist' is given twice"),
    "non-ASCII file prefix": (dict(fix_extra="file r\u00e9sum\u00e9"),
                              "is not valid text as LAMMPS passed it on"),
    "group without ions": (
        dict(types="Li NULL", group="anions", extra_commands=["group anions type 2"]),
        "group 'anions' holds no atoms of a type mapped to a model species (types mapped: 1)",
    ),
    "file prefix in a missing directory": (
        dict(fix_extra="file no/such/dir/run"),
        "file prefix 'no/such/dir/run': directory 'no/such/dir' does not exist",
    ),
}


def input_for(files, options):
    options = dict(options)
    model = files[options.pop("model", "ref")]
    nevery_text = options.pop("nevery_text", None)
    text = System(model=model, **{"steps": 0, **options}).input_text()
    if nevery_text is not None:
        text = text.replace(f"localcond 10 {model}", f"localcond {nevery_text} {model}")
    return text


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_clear_error(tmp_path, files, case):
    options, messages = CASES[case]
    proc = run_lmp(tmp_path, input_for(files, options), check=False, timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-2000:]
    assert "ERROR" in output
    for message in [messages] if isinstance(messages, str) else messages:
        assert message.format(**files) in output, output[-3000:]
    assert "Segmentation fault" not in output and "Traceback" not in output


@pytest.mark.parametrize("locale", ["C", "C.UTF-8"])
def test_a_model_path_that_is_not_ascii_is_named(tmp_path, files, monkeypatch, locale):
    """A model under 'modèle_ü/': LAMMPS's input reader drops the first byte of such
    characters, so the path cannot reach the fix intact. The fix used to stop with
    'ERROR: fix localcond: ModelFileError' and nothing more; now it names the path as
    it arrived and says what to do, in either locale."""
    monkeypatch.setenv("LC_ALL", locale)
    folder = tmp_path / "modèle_ü"
    folder.mkdir()
    model = folder / "ref.pt"
    model.write_bytes(open(files["ref"], "rb").read())
    proc = run_lmp(tmp_path, System(model=str(model), steps=10).input_text(), check=False, timeout=120)
    assert proc.returncode != 0
    assert "use a path of ASCII characters (a symbolic link will do)" in proc.stdout, proc.stdout[-1500:]
    assert "the model path '" in proc.stdout and "mod\\udca8le_\\udcbc" in proc.stdout  # as it arrived


def test_two_dimensional_simulations_are_refused(tmp_path, files):
    text = input_for(files, {}).replace("units real", "units real\ndimension 2")
    text = text.replace("region box block 0 22.0 0 22.0 0 22.0", "region box block 0 22.0 0 22.0 -0.5 0.5")
    proc = run_lmp(tmp_path, text, check=False, timeout=120)
    assert proc.returncode != 0
    assert "fix localcond supports 3-d simulations only" in proc.stdout, proc.stdout[-2000:]


def test_units_must_be_angstrom(tmp_path, files):
    text = input_for(files, {}).replace("units real", "units lj")
    proc = run_lmp(tmp_path, text, check=False, timeout=120)
    assert proc.returncode != 0
    assert "fix localcond needs lengths in Angstrom: units real or metal, not 'lj'" in proc.stdout


def test_error_reaches_python_driver(tmp_path, files, monkeypatch):
    """Driven from Python, the same mistake is a Python exception with the message."""
    from localcond.engine.plugin import lammps

    monkeypatch.chdir(tmp_path)
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none"])
    try:
        commands = input_for(files, dict(types="Li Cl")).splitlines()
        fix_line = next(i for i, c in enumerate(commands) if "localcond" in c)
        for line in commands[:fix_line]:
            lmp.command(line)
        with pytest.raises(Exception, match="which the model does not know"):
            lmp.command(commands[fix_line])
    finally:
        lmp.close()


@pytest.mark.mpi
def test_error_on_one_rank_stops_mpirun(tmp_path, files):
    """A NaN seen by the ranks owning anions stops the job with the message (no hang)."""
    proc = run_lmp(tmp_path, input_for(files, dict(model="nan")), nprocs=2, check=False,
                   timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "model returned" in output and "non-finite value(s)" in output


@pytest.mark.mpi
def test_every_rank_failing_at_once_always_reports(tmp_path, files):
    """The model fails on both ranks at the same step: six runs in a row, each must
    end with the message on the screen and in the log (one in six used to exit
    silently when every rank aborted at once)."""
    for k in range(6):
        run_dir = tmp_path / f"run{k}"
        run_dir.mkdir()
        proc = run_lmp(run_dir, input_for(files, dict(model="raises")), nprocs=2, check=False, timeout=120)
        assert proc.returncode != 0
        assert "RuntimeError: deliberate failure inside the model" in proc.stdout
        assert "RuntimeError: deliberate failure inside the model" in (run_dir / "log.lammps").read_text()
