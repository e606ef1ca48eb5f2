"""The replica file (localcond.campaign.replicas.load_replica_spec): how many segments
carry dense labels, and the refusal of a count the run cannot give."""

import json

import pytest

from localcond.campaign.replicas import load_replica_spec
from localcond.errors import LocalcondError


def spec(tmp_path, segments, dense_segments=None):
    dense = {"stride_ps": 5.0, "lags_ps": [5.0, 10.0], "origins": {"heldout": 10}}
    if dense_segments is not None:
        dense["segments"] = dense_segments
    path = tmp_path / "replicas.json"
    path.write_text(json.dumps({"name": "r", "base_grid": "grid.json", "segments": segments, "dense_labels": dense}))
    return path


def test_dense_labels_come_from_the_first_segment_unless_asked(tmp_path):
    assert load_replica_spec(spec(tmp_path, 3)).dense_segments == 1
    assert load_replica_spec(spec(tmp_path, 4, 4)).dense_segments == 4


@pytest.mark.parametrize("dense_segments", [0, 5])
def test_dense_segments_beyond_the_run_are_refused(tmp_path, dense_segments):
    with pytest.raises(LocalcondError, match="dense_labels.segments"):
        load_replica_spec(spec(tmp_path, 4, dense_segments))
