"""Write a numerical reference from the ORIGINAL HMR TensorFlow graph.

Run in the TF environment (see tests/compat/README.md), not in openhmr's venv:

    /work/tfenv/bin/python tests/compat/make_tf_reference.py --out /work/tfref [--seed 0]

Writes into --out:

* ``model.ckpt.{index,data-00000-of-00001}``: TF V2 checkpoint holding exactly
  the inference variables of the released model (270 resnet_v2_50, 6
  3D_module, mean_param) under their original names, with seeded random
  values. No optimiser slots, no D, no SMPL constants.
* ``reference.npz``: ``images`` (B,224,224,3 float32 NHWC in [-1,1]),
  ``theta`` (3,B,85: Theta after each IEF iteration), ``features`` (B,2048),
  ``mean_param`` (1,85).
* ``smpl_reference.npz``: the random SMPL constants (original tf_smpl names and
  layouts) and the TF SMPL outputs for the final Theta: ``verts`` (B,6890,3),
  ``joints`` (B,19,3), ``Rs`` (B,24,3,3), ``J_transformed`` (B,24,3),
  ``joints2d`` (B,19,2).

It also checks that the graph's variable names/shapes equal the released
checkpoint's inference entries (../shared/reference/hmr_ckpt_variables.tsv
beside the repository, or --table)
and that restoring the checkpoint into a fresh graph reproduces Theta.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

# Allow "python tests/compat/make_tf_reference.py" from the repo root: the
# shared graph code sits next to this file and is not an installed package.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tf_graph  # noqa: E402  (needs the sys.path entry above)

# ../shared beside the repository, as the tests read it.
DEFAULT_TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                             "shared", "reference", "hmr_ckpt_variables.tsv")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0, help="seed for weights and images")
    p.add_argument("--batch", type=int, default=2, help="number of reference images")
    p.add_argument("--table", default=DEFAULT_TABLE,
                   help="released checkpoint variable table (tsv)")
    return p.parse_args(argv)


def check_saved_checkpoint(mods: tf_graph.TfModules, ckpt: str, table_path: str) -> bool:
    """List the written checkpoint and compare it with the released table's inference entries."""
    saved = {name: list(shape) for name, shape in mods.tf.train.list_variables(ckpt)}
    expected = tf_graph.expected_model_vars(tf_graph.read_ckpt_table(table_path))
    ok = saved == expected
    print(f"checkpoint {ckpt}: {len(saved)} variables; "
          f"identical names+shapes to the released inference set ({len(expected)}): {ok}")
    return ok


def restore_and_rerun(mods: tf_graph.TfModules, ckpt: str, images: np.ndarray) -> np.ndarray:
    """Rebuild the graph from scratch, restore ``ckpt`` as RunModel does, return the 3 Thetas."""
    tf = mods.tf
    graph = tf.Graph()
    with graph.as_default():
        hmr = tf_graph.build_hmr(mods, images.shape[0])
        saver = tf.train.Saver(var_list=hmr.model_vars)
        with tf.Session(graph=graph) as sess:
            saver.restore(sess, ckpt)
            return np.stack(sess.run(hmr.thetas, feed_dict={hmr.images: images}))


def main(argv: list[str] | None = None) -> int:
    """Build, randomise, run, save and self-check the reference."""
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    mods = tf_graph.import_tf()
    tf = mods.tf
    print(f"tensorflow {mods.tf2.__version__}, numpy {np.__version__}")

    images = tf_graph.make_images(args.batch, args.seed)
    smpl_arrays = tf_graph.make_smpl_arrays(args.seed + 1)
    graph = tf.Graph()
    with graph.as_default():
        hmr = tf_graph.build_hmr(mods, args.batch)
        names_ok, msg = tf_graph.compare_with_table(hmr, args.table)
        print(msg)
        print(f"graph variables == released inference variables: {names_ok}")
        smpl = tf_graph.build_smpl(mods, hmr.thetas[-1], smpl_arrays)
        saver = tf.train.Saver(var_list=hmr.model_vars,
                               write_version=tf.train.SaverDef.V2)
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            tf_graph.randomise_weights(mods, sess, hmr, images, args.seed)
            features, thetas, smpl_out, mean_param = sess.run(
                [hmr.features, hmr.thetas, smpl, hmr.mean_param],
                feed_dict={hmr.images: images})
            ckpt = saver.save(sess, os.path.join(args.out, "model.ckpt"),
                              write_meta_graph=False)

    theta = np.stack(thetas).astype(np.float32)  # (3, B, 85)
    np.savez(os.path.join(args.out, "reference.npz"),
             images=images, theta=theta, features=features.astype(np.float32),
             mean_param=mean_param.astype(np.float32))
    np.savez(os.path.join(args.out, "smpl_reference.npz"),
             **smpl_arrays, parents=np.asarray(tf_graph.SMPL_PARENTS, dtype=np.int64),
             theta=theta[-1],
             **{k: v.astype(np.float32) for k, v in smpl_out.items()})

    # Report.
    print(f"wrote {ckpt}.index/.data-00000-of-00001, reference.npz, smpl_reference.npz in {args.out}")
    print(f"images   {images.shape} {images.dtype} range [{images.min():.3f}, {images.max():.3f}]")
    print(f"features {features.shape} mean {features.mean():.4f} std {features.std():.4f} "
          f"max {features.max():.4f}; |f0-f1| mean {np.abs(features[0] - features[-1]).mean():.4f}")
    print(f"theta    {theta.shape}  max |theta| {np.abs(theta).max():.4f}")
    prev = np.tile(mean_param, (args.batch, 1))
    for t in range(theta.shape[0]):
        print(f"  iter {t}: mean |delta| {np.abs(theta[t] - prev).mean():.4f}; "
              f"theta[{t},0,:6] = {np.array2string(theta[t, 0, :6], precision=5)}; "
              f"theta[{t},0,75:78] = {np.array2string(theta[t, 0, 75:78], precision=5)}")
        prev = theta[t]
    print(f"smpl     verts {smpl_out['verts'].shape} |v| max {np.abs(smpl_out['verts']).max():.4f}; "
          f"joints {smpl_out['joints'].shape}; joints2d[0,0] {smpl_out['joints2d'][0, 0]}")

    ckpt_ok = check_saved_checkpoint(mods, ckpt, args.table)
    rerun = restore_and_rerun(mods, ckpt, images)
    diff = float(np.abs(rerun - theta).max())
    print(f"restore into a fresh graph and rerun: max |theta diff| = {diff:.3g}")
    magnitude_ok = 0.05 < np.abs(theta).max() < 20.0 and np.isfinite(theta).all()
    ok = names_ok and ckpt_ok and diff < 1e-4 and magnitude_ok
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
