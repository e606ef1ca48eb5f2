"""The LAMMPS text dump reader: boxes, columns, compression and clear errors."""

import gzip

import numpy as np
import pytest

from localcond.errors import DumpFormatError
from localcond.io.lammps_dump import read_dump

ORTHO = """ITEM: TIMESTEP
100
ITEM: NUMBER OF ATOMS
2
ITEM: BOX BOUNDS pp pp ff
-1.0 9.0
0.0 20.0
0.0 30.0
ITEM: ATOMS id type xu yu zu q extra
2 2 1.5 2.5 3.5 -1.0 7
1 1 0.5 0.25 0.125 1.0 8
"""

# LAMMPS writes the bounding box of a tilted cell: xlo_bound = xlo + min(0, xy, xz, xy+xz) ...
TRICLINIC = """ITEM: TIMESTEP
5
ITEM: NUMBER OF ATOMS
1
ITEM: BOX BOUNDS xy xz yz pp pp pp
-2.0 13.0 3.0
0.0 10.0 -1.0
0.0 8.0 0.5
ITEM: ATOMS id type x y z
1 1 1.0 2.0 3.0
"""


def test_orthogonal_frame(tmp_path):
    path = tmp_path / "a.dump"
    path.write_text(ORTHO + ORTHO.replace("100", "200", 1))
    frames = list(read_dump(path))
    assert [f.timestep for f in frames] == [100, 200]
    f = frames[0]
    assert f.pbc == (True, True, False)
    np.testing.assert_array_equal(f.cell, np.diag([10.0, 20.0, 30.0]))
    np.testing.assert_array_equal(f.origin, [-1.0, 0.0, 0.0])
    assert f.volume == 6000.0
    np.testing.assert_array_equal(f.ids, [2, 1])
    np.testing.assert_array_equal(f.positions(unwrapped=True)[1], [0.5, 0.25, 0.125])
    np.testing.assert_array_equal(f.columns["q"], [-1.0, 1.0])


def test_triclinic_box_by_hand(tmp_path):
    """xy=3, xz=-2, yz=1 (hand-built): xlo = -2 - min(0,3,-2,1) = 0, xhi = 13 - max(0,3,-2,1) = 10;
    ylo = 0 - min(0,1) = 0, yhi = 10 - max(0,1) = 9."""
    text = TRICLINIC.replace("-2.0 13.0 3.0", "-2.0 13.0 3.0").replace("0.0 10.0 -1.0", "0.0 10.0 -2.0")
    text = text.replace("0.0 8.0 0.5", "0.0 8.0 1.0")
    path = tmp_path / "t.dump"
    path.write_text(text)
    (frame,) = read_dump(path)
    np.testing.assert_allclose(frame.cell, [[10.0, 0, 0], [3.0, 9.0, 0], [-2.0, 1.0, 8.0]])
    np.testing.assert_allclose(frame.origin, [0.0, 0.0, 0.0])


def test_gzip_and_scaled_positions(tmp_path):
    path = tmp_path / "s.dump.gz"
    text = ORTHO.replace("xu yu zu", "xs ys zs")
    with gzip.open(path, "wt") as handle:
        handle.write(text)
    (frame,) = read_dump(path)
    np.testing.assert_allclose(frame.positions()[0], [-1.0 + 15.0, 50.0, 105.0])


@pytest.mark.parametrize(
    "text, message",
    [
        (ORTHO[: ORTHO.index("1 1 0.5")], "frame 0 (line 10): file ends where atom line 2 of 2 was expected"),
        (ORTHO + "".join(ORTHO.splitlines(True)[:4]),
         "frame 1 (line 15): file ends where ITEM: BOX BOUNDS was expected"),
        (ORTHO.replace("0.5 0.25", "0.5 abc"), "atom lines contain non-numeric values"),
        (ORTHO.replace(" 7\n", "\n"), "hold 13 numbers, expected 2 x 7 columns"),
        (ORTHO.replace("ITEM: NUMBER OF ATOMS", "ITEM: NATOMS"), "expected 'ITEM: NUMBER OF ATOMS'"),
        (ORTHO.replace("id type", "ident type"), "no 'id' column"),
        ("garbage\n", "expected 'ITEM: TIMESTEP'"),
    ],
)
def test_malformed_dumps(tmp_path, text, message):
    path = tmp_path / "bad.dump"
    path.write_text(text)
    with pytest.raises(DumpFormatError, match=str(path).replace(".", r"\.")) as info:
        list(read_dump(path))
    assert message in str(info.value)


def test_missing_positions(tmp_path):
    path = tmp_path / "np.dump"
    path.write_text(ORTHO.replace("xu yu zu", "vx vy vz"))
    (frame,) = read_dump(path)
    with pytest.raises(DumpFormatError, match="no position columns"):
        frame.positions()
