"""What DIALS made of a simulated dataset, compared with the truth (run by DIALS's Python, not ours).

    python3 dials_metrics.py TRUTH.expt HKL WORKDIR  ->  one JSON object on stdout

WORKDIR holds the outputs of dials.import / find_spots / index / refine / integrate under their default
names (imported.expt, strong.refl, indexed.expt/.refl, refined.expt/.refl, integrated.expt/.refl); the
metrics of the steps that ran are reported, None for the others:

* panels: how many panels dxtbx imported; spots: strong spots; indexed_pct: indexed / strong (%);
* cell_err_pct: the largest relative error of a, b, c (refined crystal vs the truth, after matching the basis
  DIALS chose to the truth's by the integer change of basis between the two real-space bases);
  angle_err_deg: the largest cell-angle error;
* orientation_err_deg: the angle of the rotation between the refined and the true crystal (orthogonal part
  of R_refined R_truth^-1 after the basis change);
* distance_err_mm: |refined - true| sample-to-detector distance (along the normal); rmsd_x/y_px, rmsd_z_img:
  refinement RMSDs of the reflections used in refinement;
* intensity_r: Pearson r of the integrated intensities (profile-fitted where available, Lorentz-polarization
  corrected, fully recorded: partiality >= 0.9) against F^2 of the HKL file at the truth's indices.

Only dxtbx, dials and numpy are imported (this file runs outside our environment).
"""
import json
import math
import os
import sys

import numpy as np


def _real(crystal) -> np.ndarray:
    """Real-space basis as columns (Å)."""
    return np.array([crystal.get_real_space_vectors()[i] for i in range(3)], dtype=float).T


def _orthogonal(m: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(m)
    r = u @ vt
    return r if np.linalg.det(r) > 0 else u @ np.diag([1, 1, -1]) @ vt


def compare_crystals(truth, found) -> dict:
    """Basis change (integer M, found = truth @ M), cell and orientation errors."""
    Rt, Rf = _real(truth), _real(found)
    M = np.rint(np.linalg.solve(Rt, Rf))
    det = round(float(np.linalg.det(M)))
    out = {"basis_change": M.astype(int).tolist(), "basis_det": det}
    if abs(det) != 1:
        return out
    Rt2 = Rt @ M
    lt, lf = np.linalg.norm(Rt2, axis=0), np.linalg.norm(Rf, axis=0)
    ang = lambda R, i, j: math.degrees(math.acos(np.dot(R[:, i], R[:, j]) / np.linalg.norm(R[:, i])  # noqa: E731
                                                 / np.linalg.norm(R[:, j])))
    pairs = ((1, 2), (0, 2), (0, 1))
    out["cell_found"] = [*lf.tolist(), *(ang(Rf, i, j) for i, j in pairs)]
    out["cell_truth"] = [*lt.tolist(), *(ang(Rt2, i, j) for i, j in pairs)]
    out["cell_err_pct"] = float(np.max(np.abs(lf / lt - 1.0)) * 100.0)
    out["angle_err_deg"] = float(max(abs(ang(Rf, i, j) - ang(Rt2, i, j)) for i, j in pairs))
    rot = _orthogonal(Rf @ np.linalg.inv(Rt2))
    out["orientation_err_deg"] = float(math.degrees(math.acos(max(-1.0, min(1.0, (np.trace(rot) - 1) / 2)))))
    out["M"] = M
    return out


def read_hkl(path) -> dict:
    table = {}
    with open(path) as fh:
        for line in fh:
            p = line.split()
            if len(p) >= 4 and not line.lstrip().startswith("#"):
                table[(int(p[0]), int(p[1]), int(p[2]))] = float(p[3])
    return table


def main(truth_path, hkl_path, work) -> dict:
    from dials.array_family import flex
    from dxtbx.model.experiment_list import ExperimentListFactory

    load = lambda name: ExperimentListFactory.from_json_file(os.path.join(work, name), check_format=False)  # noqa: E731
    refl = lambda name: flex.reflection_table.from_file(os.path.join(work, name))  # noqa: E731
    have = lambda name: os.path.exists(os.path.join(work, name))  # noqa: E731
    truth = load(truth_path)[0]
    res = {"imported": have("imported.expt"), "spots": None, "indexed_pct": None, "cell_err_pct": None,
           "orientation_err_deg": None, "distance_err_mm": None, "rmsd_x_px": None, "rmsd_y_px": None,
           "rmsd_z_img": None, "intensity_r": None}
    if res["imported"]:
        imp = load("imported.expt")
        res["images"] = len(imp[0].imageset) if imp[0].imageset is not None else None
        res["panels"] = len(imp[0].detector)
        res["import_distance_err_mm"] = abs(imp[0].detector[0].get_distance() - truth.detector[0].get_distance())
        res["import_beam_centre_err_mm"] = float(np.linalg.norm(
            np.subtract(imp[0].detector[0].get_beam_centre(imp[0].beam.get_s0()),
                        truth.detector[0].get_beam_centre(truth.beam.get_s0()))))
    if have("strong.refl"):
        res["spots"] = refl("strong.refl").size()
    if have("indexed.refl") and res["spots"]:
        ind = refl("indexed.refl")
        res["indexed_pct"] = 100.0 * ind.get_flags(ind.flags.indexed).count(True) / res["spots"]
    final = "refined.expt" if have("refined.expt") else "indexed.expt" if have("indexed.expt") else None
    M = None
    if final is not None:
        exp = load(final)[0]
        cmp = compare_crystals(truth.crystal, exp.crystal)
        M = cmp.pop("M", None)
        res.update(cmp)
        res["distance_found_mm"] = exp.detector[0].get_distance()
        res["distance_true_mm"] = truth.detector[0].get_distance()
        res["distance_err_mm"] = abs(res["distance_found_mm"] - res["distance_true_mm"])
    if have("refined.refl"):
        r = refl("refined.refl")
        r = r.select(r.get_flags(r.flags.used_in_refinement))
        obs, cal = (np.array(r[k]).reshape(-1, 3) for k in ("xyzobs.px.value", "xyzcal.px"))
        rmsd = np.sqrt(np.mean((obs - cal) ** 2, axis=0))
        res["rmsd_x_px"], res["rmsd_y_px"], res["rmsd_z_img"] = (float(x) for x in rmsd)
        res["refined_reflections"] = int(r.size())
    if have("integrated.refl") and M is not None:
        r = refl("integrated.refl")
        prf = r.get_flags(r.flags.integrated_prf)
        col = "intensity.prf.value" if prf.count(True) > 0.5 * r.size() else "intensity.sum.value"
        sel = r.get_flags(r.flags.integrated_prf if col.endswith("prf.value") else r.flags.integrated_sum)
        r = r.select(sel & (r["partiality"] >= 0.9))
        qe = np.array(r["qe"]) if "qe" in r else 1.0  # detector efficiency: only with a sensor
        I = np.array(r[col]) * np.array(r["lp"]) / qe
        hd = np.array(r["miller_index"], dtype=float).reshape(-1, 3)
        ht = np.rint(hd @ np.linalg.inv(M)).astype(int)  # h_t = M^-T h_d, as rows: h_d M^-1
        table = read_hkl(hkl_path)
        F = np.array([table.get(tuple(h), np.nan) for h in ht])
        ok = np.isfinite(F)
        res["intensity_n"] = int(ok.sum())
        res["intensity_column"] = col
        if ok.sum() > 10:
            res["intensity_r"] = float(np.corrcoef(I[ok], F[ok] ** 2)[0, 1])
    return res


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:4])))
