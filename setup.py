from setuptools import find_packages, setup

setup(
    name="pydarknet",
    version="0.1.0",
    description="Darknet's YOLO v1-v3 in Python: same cfg and weights files, same numbers, Numba and CuPy kernels",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["pydarknet", "pydarknet.*"]),
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
        # CuPy and NVRTC: the GPU backend, and on machines without a GPU the tests that compile its CUDA sources
        "gpu": ["cupy-cuda12x", "nvidia-cuda-nvrtc-cu12"],
        "gpu13": ["cupy-cuda13x"],
        # `pydarknet export`: onnx writes the graph, onnxruntime runs it
        "export": ["onnx>=1.14", "onnxruntime>=1.16"],
        # OpenCV 5 dropped the Darknet importer the cross-check tests need
        # ruff pinned: a new release's rules would fail CI on code that has not changed
        "test": ["pytest>=7", "hypothesis>=6", "opencv-python-headless>=4.8,<5", "pycocotools>=2.0.7",
                 "faster-coco-eval>=1.6", "onnx>=1.14", "onnxruntime>=1.16", "ruff==0.17.5"],
    },
    entry_points={"console_scripts": ["pydarknet = pydarknet.cli:run"]},
)
