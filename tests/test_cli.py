"""The ``segrefine`` command end to end on three ECSSD pairs with the synthetic CascadePSP weights.

Coarse masks are made from the ground truth (area-downsampled x8, nearest-upsampled: blocky
edges) in a temporary folder; the images are symlinked there, never copied into the repo.
The refiner runs in fast mode with a small working size so every refine takes about a second.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from segrefine_plugins import build_refiner
from segrefine_plugins.cli import main
from segrefine_plugins.io import read_image, read_mask
from segrefine_plugins.metrics import MetricSummary, boundary_accuracy, boundary_iou, iou_counts

STEMS = ('0001', '0002', '0003')
L = 80


@pytest.fixture(scope='module')
def ecssd(data_root, tmp_path_factory):
    """Folders images/ (symlinks), coarse/ and gt/ for three ECSSD pairs."""
    root = tmp_path_factory.mktemp('ecssd3')
    for name in ('images', 'coarse', 'gt'):
        (root / name).mkdir()
    for stem in STEMS:
        (root / 'images' / f'{stem}.jpg').symlink_to(data_root / 'ecssd' / 'images' / f'{stem}.jpg')
        gt_path = data_root / 'ecssd' / 'masks' / f'{stem}.png'
        (root / 'gt' / f'{stem}.png').symlink_to(gt_path)
        gt = read_mask(gt_path)
        h, w = gt.shape
        small = cv2.resize(gt, (w // 8, h // 8), interpolation=cv2.INTER_AREA)
        coarse = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(root / 'coarse' / f'{stem}.png'), np.where(coarse > 127, 255, 0).astype(np.uint8))
    return root


def _refine_args(ecssd, weights, out, *extra, image=None, mask=None):
    return ['refine', '--image', str(image or ecssd / 'images'), '--mask', str(mask or ecssd / 'coarse'),
            '--out', str(out), '--checkpoint', str(weights), '--L', str(L), '--fast', *extra]


@pytest.fixture(scope='module')
def first_run(ecssd, cascadepsp_weights):
    """One refine run over the three pairs with --overlay (shared by the tests below)."""
    out = ecssd / 'out'
    code = main(_refine_args(ecssd, cascadepsp_weights, out, '--overlay'))
    return out, {'code': code, 'mtimes': _mtimes(out)}


def _mtimes(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_refine_writes_every_output(ecssd, first_run, cascadepsp_weights):
    out, cap = first_run
    assert cap['code'] == 0
    assert sorted(os.listdir(out)) == sorted([f'{s}.png' for s in STEMS]
                                             + [f'{s}_overlay.png' for s in STEMS])
    for stem in STEMS:
        image = read_image(ecssd / 'images' / f'{stem}.jpg')
        h, w = image.shape[:2]
        prob = read_mask(out / f'{stem}.png')
        assert prob.shape == (h, w) and prob.dtype == np.uint8
        overlay = read_image(out / f'{stem}_overlay.png')
        assert overlay.shape[0] == h and overlay.shape[1] > 2 * w
    # the PNG holds floor(p * 255) of the refiner's own output
    refiner = build_refiner(dict(type='CascadePSP', checkpoint=str(cascadepsp_weights), L=L, fast=True))
    p = refiner.refine(read_image(ecssd / 'images' / '0002.jpg'), read_mask(ecssd / 'coarse' / '0002.png'))
    assert np.array_equal(read_mask(out / '0002.png'), np.floor(p * 255).astype(np.uint8))
    assert len(np.unique(read_mask(out / '0002.png'))) > 2        # soft, not thresholded


def test_rerun_skips_existing_outputs(ecssd, first_run, cascadepsp_weights, capsys):
    out, cap = first_run
    capsys.readouterr()
    assert main(_refine_args(ecssd, cascadepsp_weights, out, '--overlay')) == 0
    assert '0 refined, 3 skipped' in capsys.readouterr().out
    assert _mtimes(out) == cap['mtimes']


def test_resume_after_interruption_and_overwrite(ecssd, first_run, cascadepsp_weights, capsys, tmp_path):
    out = tmp_path / 'partial'
    out.mkdir()
    # an interrupted run: one finished output and a stray temp file of an unfinished write
    first = first_run[0]
    (out / '0001.png').write_bytes((first / '0001.png').read_bytes())
    os.utime(out / '0001.png', ns=(10**18, 10**18))
    (out / '.0002.png.deadbeef.tmp').write_bytes(b'partial')
    capsys.readouterr()
    assert main(_refine_args(ecssd, cascadepsp_weights, out, image=ecssd / 'images' / '0001.jpg')) == 0
    assert '0 refined, 1 skipped' in capsys.readouterr().out
    assert (out / '0001.png').stat().st_mtime_ns == 10**18
    # --overwrite recomputes it (same numbers), --binary writes 0/255
    assert main(_refine_args(ecssd, cascadepsp_weights, out, '--overwrite', '--binary',
                             image=ecssd / 'images' / '0001.jpg')) == 0
    assert '1 refined, 0 skipped' in capsys.readouterr().out
    assert (out / '0001.png').stat().st_mtime_ns != 10**18
    binary = read_mask(out / '0001.png')
    soft = read_mask(first / '0001.png')
    assert set(np.unique(binary)) <= {0, 255}
    assert np.array_equal(binary, np.where(soft > 128, 255, 0))


def test_corrupt_and_unpaired_inputs_are_reported(ecssd, first_run, cascadepsp_weights, tmp_path, capsys):
    out, cap = first_run
    images = tmp_path / 'images'
    masks = tmp_path / 'masks'
    images.mkdir()
    masks.mkdir()
    for stem in STEMS:
        (images / f'{stem}.jpg').symlink_to(ecssd / 'images' / f'{stem}.jpg')
        (masks / f'{stem}.png').symlink_to(ecssd / 'coarse' / f'{stem}.png')
    (images / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 this is not a JPEG')
    (masks / 'broken.png').symlink_to(ecssd / 'coarse' / '0001.png')
    jpeg = (ecssd / 'images' / '0001.jpg').read_bytes()
    (images / 'truncated.jpg').write_bytes(jpeg[:len(jpeg) // 2])
    (masks / 'truncated.png').symlink_to(ecssd / 'coarse' / '0001.png')
    (images / 'lonely.jpg').symlink_to(ecssd / 'images' / '0001.jpg')
    capsys.readouterr()
    code = main(_refine_args(ecssd, cascadepsp_weights, out, image=images, mask=masks))
    captured = capsys.readouterr()
    assert code == 1
    assert 'broken.jpg' in captured.err and 'truncated.jpg' in captured.err
    assert 'lonely.jpg' in captured.err
    assert '0 refined, 3 skipped (outputs exist), 2 failed, 1 unpaired' in captured.out
    assert not (out / 'broken.png').exists() and not (out / 'truncated.png').exists()
    assert _mtimes(out) == cap['mtimes']


def test_mask_of_another_size_fails_that_pair(ecssd, cascadepsp_weights, tmp_path, capsys):
    mask = tmp_path / 'small.png'
    cv2.imwrite(str(mask), np.full((10, 10), 255, np.uint8))
    code = main(_refine_args(ecssd, cascadepsp_weights, tmp_path / 'out',
                             image=ecssd / 'images' / '0001.jpg', mask=mask))
    assert code == 1
    assert '10x10' in capsys.readouterr().err
    assert list((tmp_path / 'out').iterdir()) == []


def test_unwritable_output_fails_that_pair(cascadepsp_weights, tmp_path, capsys):
    rng = np.random.default_rng(0)
    (tmp_path / 'in').mkdir()
    cv2.imwrite(str(tmp_path / 'in' / 'a.png'), rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    mask = np.zeros((40, 48), np.uint8)
    mask[10:30, 12:36] = 255
    cv2.imwrite(str(tmp_path / 'a_mask.png'), mask)
    (tmp_path / 'out' / 'a.png').mkdir(parents=True)        # a folder where the output goes
    code = main(['refine', '--image', str(tmp_path / 'in' / 'a.png'), '--mask',
                 str(tmp_path / 'a_mask.png'), '--out', str(tmp_path / 'out'), '--checkpoint',
                 str(cascadepsp_weights), '--L', str(L), '--fast', '--overwrite'])
    captured = capsys.readouterr()
    assert code == 1 and 'a: skipped' in captured.err and '1 failed' in captured.out
    assert os.listdir(tmp_path / 'out') == ['a.png'] and (tmp_path / 'out' / 'a.png').is_dir()


def test_refuses_to_write_into_an_input_folder(ecssd, cascadepsp_weights, capsys):
    before = {n: _mtimes(ecssd / n) for n in ('images', 'coarse')}
    for folder in ('coarse', 'images'):
        code = main(_refine_args(ecssd, cascadepsp_weights, ecssd / folder, '--overwrite'))
        assert code == 2
        assert 'folder the inputs are in' in capsys.readouterr().err
    assert {n: _mtimes(ecssd / n) for n in ('images', 'coarse')} == before


def test_config_errors_exit_2_without_traceback(ecssd, tmp_path, capsys):
    out = tmp_path / 'out'
    cases = [
        ['--checkpoint', str(tmp_path / 'missing.pth')],
        ['--config', str(tmp_path / 'missing.py')],
        ['--type', 'NoSuchRefiner'],
        ['--set', 'novalue'],
    ]
    bad_weights = tmp_path / 'bad.pth'
    bad_weights.write_bytes(b'not a checkpoint')
    cases.append(['--checkpoint', str(bad_weights)])
    for extra in cases:
        code = main(['refine', '--image', str(ecssd / 'images'), '--mask', str(ecssd / 'coarse'),
                     '--out', str(out), *extra])
        err = capsys.readouterr().err
        assert code == 2, extra
        assert 'error' in err and 'Traceback' not in err, extra
    assert not out.exists() or list(out.iterdir()) == []
    assert main(['refine', '--image', str(ecssd / 'images')]) == 2          # argparse usage
    assert main(['refine', '--image', str(tmp_path / 'none'), '--mask', str(ecssd / 'coarse'),
                 '--out', str(out)]) == 2


def test_default_refiner_uses_the_shipped_weights(ecssd, tmp_path):
    out = tmp_path / 'out'
    assert main(['refine', '--image', str(ecssd / 'images'), '--mask', str(ecssd / 'coarse'),
                 '--out', str(out)]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(p.stem + '.png' for p in (ecssd / 'images').iterdir())


def test_config_file_and_set(ecssd, cascadepsp_weights, tmp_path, capsys):
    config = tmp_path / 'refiner.py'
    config.write_text(f"refiner = dict(type='CascadePSP', checkpoint={str(cascadepsp_weights)!r}, "
                      f"L=900, fast=False)\n")
    out = tmp_path / 'out'
    # --set overrides the config's entries
    code = main(['refine', '--image', str(ecssd / 'images' / '0003.jpg'), '--mask',
                 str(ecssd / 'coarse'), '--out', str(out), '--config', str(config),
                 '--set', f'L={L}', '--set', 'fast=True'])
    assert code == 0, capsys.readouterr().err
    assert read_mask(out / '0003.png').shape == read_image(ecssd / 'images' / '0003.jpg').shape[:2]


def test_eval_numbers_equal_the_metric_functions(ecssd, first_run, tmp_path, capsys):
    out, _ = first_run                                            # also holds *_overlay.png
    report_path = tmp_path / 'report.json'
    capsys.readouterr()
    code = main(['eval', '--pred', str(out), '--gt', str(ecssd / 'gt'), '--coarse',
                 str(ecssd / 'coarse'), '--json', str(report_path)])
    table = capsys.readouterr().out
    assert code == 0
    report = json.loads(report_path.read_text())
    for row, folder in (('refined', out), ('coarse', ecssd / 'coarse')):
        inter = union = 0
        mbas, bious = [], []
        for stem in STEMS:
            gt = read_mask(ecssd / 'gt' / f'{stem}.png')
            pred = read_mask(folder / f'{stem}.png')
            i, u = iou_counts(gt, pred)
            inter, union = inter + i, union + u
            mbas.append(boundary_accuracy(gt, pred))
            bious.append(boundary_iou(gt, pred))
        assert report[row]['images'] == 3
        assert (report[row]['intersection'], report[row]['union']) == (inter, union)
        assert report[row]['iou'] == inter / union
        assert report[row]['mba'] == pytest.approx(np.mean(mbas), abs=1e-12)
        assert report[row]['boundary_iou'] == pytest.approx(np.mean(bious), abs=1e-12)
        line = next(t for t in table.splitlines() if t.startswith(row)).split()
        assert line[1:4] == [f'{100 * report[row][k]:.2f}' for k in ('iou', 'mba', 'boundary_iou')]
    assert report['delta']['mba'] == pytest.approx(report['refined']['mba'] - report['coarse']['mba'])
    assert [e['name'] for e in report['per_image']] == list(STEMS)
    assert 'delta' in table


def test_eval_reports_missing_predictions(ecssd, tmp_path, capsys):
    preds = tmp_path / 'preds'
    preds.mkdir()
    (preds / '0001.png').symlink_to(ecssd / 'coarse' / '0001.png')
    code = main(['eval', '--pred', str(preds), '--gt', str(ecssd / 'gt')])
    captured = capsys.readouterr()
    assert code == 1 and '0002.png' in captured.err
    assert captured.out.splitlines()[1].split()[-1] == '1'            # one image evaluated
    summary = MetricSummary()
    summary.update(read_mask(ecssd / 'gt' / '0001.png'), read_mask(preds / '0001.png'))
    assert f'{100 * summary.result()["mba"]:.2f}' in captured.out
    assert main(['eval', '--pred', str(tmp_path / 'empty'), '--gt', str(ecssd / 'gt')]) == 2


def test_module_entry_points_run():
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, '-m', 'segrefine_plugins', 'refine', '--help'], cwd=repo,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and '--overwrite' in done.stdout
    done = subprocess.run([sys.executable, '-m', 'segrefine_plugins.cli', 'eval'], cwd=repo,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and 'required' in done.stderr


# --------------------------------------------------------------------------- label maps, ROI options
def _label_pair(folder, data_root):
    """A 2x2 mosaic of ECSSD objects (classes 1..4 on background 0) with a coarse label map
    (each object's mask 4x down-up-sampled), as files."""
    import cv2
    from segrefine_plugins.io import read_image, read_mask, write_png_atomic
    image = np.zeros((128, 128, 3), np.uint8)
    coarse = np.zeros((128, 128), np.uint8)
    for k, name in enumerate(('0001', '0002', '0003', '0004')):
        y, x = (k // 2) * 64, (k % 2) * 64
        img = cv2.resize(read_image(data_root / 'ecssd' / 'images' / f'{name}.jpg'), (64, 64))
        m = cv2.resize((read_mask(data_root / 'ecssd' / 'masks' / f'{name}.png') > 127)
                       .astype(np.uint8), (16, 16), interpolation=cv2.INTER_NEAREST)
        m = cv2.resize(m, (64, 64), interpolation=cv2.INTER_NEAREST).astype(bool)
        image[y:y + 64, x:x + 64] = img
        coarse[y:y + 64, x:x + 64][m] = k + 1
    (folder / 'img').mkdir()
    (folder / 'lab').mkdir()
    write_png_atomic(folder / 'img' / 'a.png', image)
    write_png_atomic(folder / 'lab' / 'a.png', coarse)
    return coarse


def test_refine_label_maps_with_roi_options(tmp_path, data_root, capsys):
    from segrefine_plugins.io import read_label_map
    coarse = _label_pair(tmp_path, data_root)
    base = ['refine', '--image', str(tmp_path / 'img'), '--mask', str(tmp_path / 'lab'),
            '--labels', '--roi', 'min_area=30']
    assert main(base + ['--out', str(tmp_path / 'o1'), '--overlay']) == 0
    refined = read_label_map(tmp_path / 'o1' / 'a.png')
    assert refined.shape == coarse.shape and refined.dtype == np.uint8
    assert set(np.unique(refined)) <= set(np.unique(coarse))
    assert not np.array_equal(refined, coarse)                   # the refiner changed it
    assert (tmp_path / 'o1' / 'a_overlay.png').is_file()
    # the gate at its strictest keeps every ROI coarse: the input comes back unchanged
    assert main(base + ['--roi', 'gate_min_confidence=1.0', '--out', str(tmp_path / 'o2')]) == 0
    assert np.array_equal(read_label_map(tmp_path / 'o2' / 'a.png'), coarse)
    assert 'kept coarse by the gate' in capsys.readouterr().out


def test_roi_option_errors_are_usage_errors(tmp_path, data_root, capsys):
    _label_pair(tmp_path, data_root)
    for bad in ('max_upscale=0.5', 'no_such=1', 'gate_min_iou=high', 'min_area',
                'gate_trust_change_depth=4'):           # trust without the depth rule
        code = main(['refine', '--image', str(tmp_path / 'img'), '--mask', str(tmp_path / 'lab'),
                     '--labels', '--roi', bad, '--out', str(tmp_path / 'o')])
        assert code == 2, bad
        assert '--roi' in capsys.readouterr().err
    assert not (tmp_path / 'o').exists()


def test_gate_on_single_masks(tmp_path, data_root, capsys):
    from segrefine_plugins.io import read_mask, write_png_atomic, read_image
    img = read_image(data_root / 'ecssd' / 'images' / '0005.jpg')
    gt = read_mask(data_root / 'ecssd' / 'masks' / '0005.png')
    (tmp_path / 'i').mkdir()
    (tmp_path / 'm').mkdir()
    write_png_atomic(tmp_path / 'i' / 'x.png', img)
    write_png_atomic(tmp_path / 'm' / 'x.png', gt)
    assert main(['refine', '--image', str(tmp_path / 'i'), '--mask', str(tmp_path / 'm'),
                 '--out', str(tmp_path / 'o'), '--roi', 'gate_min_confidence=1.0']) == 0
    out = read_mask(tmp_path / 'o' / 'x.png')
    assert np.array_equal(out > 128, gt > 127)                   # the coarse mask, kept
    assert '1 masks kept coarse by the gate' in capsys.readouterr().out


def test_resume_refuses_outputs_made_with_other_settings_or_weights(ecssd, cascadepsp_weights,
                                                                   tmp_path, capsys):
    """Every output carries a stamp of the settings and weights that made it: a resumed run
    with other outputs-changing settings or other weights refuses (exit 2, nothing written)
    instead of mixing two refiners; exact knobs (device) resume; --overwrite recomputes."""
    import shutil

    from segrefine_plugins.cli import SETTINGS_KEY
    from segrefine_plugins.io import png_text
    weights = tmp_path / 'weights.pth'
    shutil.copy(cascadepsp_weights, weights)
    out = tmp_path / 'out'
    one = dict(image=ecssd / 'images' / '0001.jpg')
    assert main(_refine_args(ecssd, weights, out, **one)) == 0
    stamp = png_text(out / '0001.png')[SETTINGS_KEY]
    mtime = (out / '0001.png').stat().st_mtime_ns
    capsys.readouterr()
    for extra in (['--binary'], ['--set', 'L=96'], ['--roi', 'gate_min_change_depth=2']):
        args = _refine_args(ecssd, weights, out, *extra, **one)
        assert main(args) == 2, extra
        err = capsys.readouterr().err
        assert 'other refiner settings or weights' in err and "'0001.png'" in err
        assert (out / '0001.png').stat().st_mtime_ns == mtime
    # exact knobs and explicit defaults are the same settings (L=80.0 is refused: L is an
    # int; ints for float keys: test_settings_stamp_reads_settings_as_the_refiner_does)
    for extra in (['--device', 'cpu'], ['--precision', 'fp32'],
                  ['--set', 'crop_batch_size=1']):
        assert main(_refine_args(ecssd, weights, out, *extra, **one)) == 0, extra
        assert '0 refined, 1 skipped' in capsys.readouterr().out
    # the same path with other content is other weights
    import torch
    state = torch.load(weights, map_location='cpu', weights_only=True)
    key = next(k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point())
    state[key] = state[key] * 1.5
    torch.save(state, weights)
    assert main(_refine_args(ecssd, weights, out, **one)) == 2
    assert 'other refiner settings or weights' in capsys.readouterr().err
    assert main(_refine_args(ecssd, weights, out, '--overwrite', **one)) == 0
    assert png_text(out / '0001.png')[SETTINGS_KEY] != stamp
    assert main(_refine_args(ecssd, weights, out, **one)) == 0
    assert '0 refined, 1 skipped' in capsys.readouterr().out


def test_unstamped_outputs_are_kept_with_a_warning(ecssd, first_run, cascadepsp_weights,
                                                   tmp_path, capsys):
    out = tmp_path / 'legacy'
    out.mkdir()
    cv2.imwrite(str(out / '0001.png'), read_mask(first_run[0] / '0001.png'))   # no stamp
    capsys.readouterr()
    assert main(_refine_args(ecssd, cascadepsp_weights, out,
                             image=ecssd / 'images' / '0001.jpg')) == 0
    captured = capsys.readouterr()
    assert '0 refined, 1 skipped' in captured.out and 'carry no record' in captured.err


def test_settings_stamp_reads_settings_as_the_refiner_does(tmp_path):
    """The stamp depends on what the refiner will do, not on how it was spelled: an explicit
    default, 2 for 2.0 and the default weights' own work scale give one stamp; a real change
    (work_scale=1 loads other weights, soft input, a gate) gives another; ROI options that
    single masks do not use and --binary with label maps do not count."""
    from segrefine_plugins.cli import settings_stamp
    from segrefine_plugins.multiobject import RoiOptions
    plain = RoiOptions()
    base = settings_stamp({'type': 'CRM'}, plain, False, False)
    assert settings_stamp({'type': 'CRM', 'work_scale': 2}, plain, False, False) == base
    assert settings_stamp({'type': 'CRM', 'work_scale': 2.0, 'precision': 'fp32',
                           'device': 'cpu', 'chunk_size': 999}, plain, False, False) == base
    assert settings_stamp({'type': 'CRM'}, RoiOptions(max_upscale=1.0), False, False) == base
    ckpt = {'type': 'CRM', 'checkpoint': 'crm.pth'}
    assert settings_stamp(dict(ckpt, work_scale=1, scales=(0.125, 0.25, 0.5, 1)), plain, False,
                          False) == settings_stamp(ckpt, plain, False, False)
    for other in ({'type': 'CRM', 'work_scale': 1}, {'type': 'CRM', 'soft_input': True},
                  {'type': 'CRM', 'precision': 'bf16'}):
        assert settings_stamp(other, plain, False, False) != base, other
    assert settings_stamp({'type': 'CRM'}, RoiOptions(gate_min_change_depth=2), False,
                          False) != base
    assert settings_stamp({'type': 'CRM'}, plain, False, True) != base
    labels = settings_stamp({'type': 'CRM'}, plain, True, False)
    assert labels != base and settings_stamp({'type': 'CRM'}, plain, True, True) == labels
    assert settings_stamp({'type': 'CRM'}, RoiOptions(max_upscale=1.0), True, False) != labels
    # options spelled at their defaults give the same stamp (an opt-in option added later,
    # unset, leaves earlier stamps as they were); a trust depth is a real change
    explicit = RoiOptions(roi_padding=0.25, gate_min_iou=None, stuff_scale=0.51)
    assert settings_stamp({'type': 'CRM'}, explicit, True, False) == labels
    depth2 = settings_stamp({'type': 'CRM'}, RoiOptions(gate_min_change_depth=2), False, False)
    assert settings_stamp({'type': 'CRM'}, RoiOptions(gate_min_change_depth=2.0,
                                                      gate_trust_change_depth=None),
                          False, False) == depth2
    assert settings_stamp({'type': 'CRM'}, RoiOptions(gate_min_change_depth=2,
                                                      gate_trust_change_depth=4),
                          False, False) != depth2


def test_label_map_and_overlay_outputs_are_stamped(tmp_path, data_root):
    from segrefine_plugins.cli import SETTINGS_KEY
    from segrefine_plugins.io import png_text
    images, labels = tmp_path / 'images', tmp_path / 'labels'
    images.mkdir(), labels.mkdir()
    (images / 'a.jpg').symlink_to(data_root / 'ecssd' / 'images' / '0001.jpg')
    gt = read_mask(data_root / 'ecssd' / 'masks' / '0001.png')
    cv2.imwrite(str(labels / 'a.png'), (gt > 127).astype(np.uint16) * 3)
    out = tmp_path / 'out'
    assert main(['refine', '--image', str(images), '--mask', str(labels), '--out', str(out),
                 '--labels', '--overlay', '--set', 'work_scale=1']) == 0
    stamps = {png_text(out / n).get(SETTINGS_KEY) for n in ('a.png', 'a_overlay.png')}
    assert len(stamps) == 1 and None not in stamps
    from segrefine_plugins.io import read_label_map
    assert set(np.unique(read_label_map(out / 'a.png'))) == {0, 3}   # still a label map
    assert main(['refine', '--image', str(images), '--mask', str(labels), '--out', str(out),
                 '--labels', '--overlay']) == 2   # the default (work_scale 2) is another refiner
