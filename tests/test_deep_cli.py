"""`medspark deep`: configuration errors and a missing torch stop it before Spark starts."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from medspark.commands.deep import main


def test_bad_settings_exit_2_before_spark(tmp_path, capsys):
    assert main(["train", "--lake", str(tmp_path), "--set", "deep.autoencoder.latent=3"]) == 2
    assert "unknown key 'deep.autoencoder.latent'" in capsys.readouterr().err
    assert main(["train", "--lake", str(tmp_path), "--arch", "autoencoder",
                 "--set", "deep.input_size=30"]) == 2
    assert "divisible" in capsys.readouterr().err
    assert main(["embed", "--lake", str(tmp_path), "--model", "latest"]) == 2
    assert "no deep model" in capsys.readouterr().err


def test_without_torch_says_how_to_install_it():
    script = textwrap.dedent("""
        import importlib.abc, sys

        class NoTorch(importlib.abc.MetaPathFinder):  # as if torch were not installed
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] == "torch":
                    raise ModuleNotFoundError(f"No module named {name!r}")

        sys.meta_path.insert(0, NoTorch())
        from medspark.commands.deep import main
        sys.exit(main(["train", "--lake", "/nonexistent"]))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert "pip install 'medspark[deep]'" in done.stderr
