"""mamba-sr-archs: Mamba-based super-resolution networks (MMA, MambaIRv2, MPSI) for BasicSR."""
import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read_version():
    with open(os.path.join(HERE, 'mamba_sr_archs', '__init__.py')) as f:
        return re.search(r"^__version__ = '([^']+)'", f.read(), re.M).group(1)


with open(os.path.join(HERE, 'README.md'), encoding='utf-8') as f:
    long_description = f.read()

setup(
    name='mamba-sr-archs',
    version=read_version(),
    description='MambaIRv2, MMA and MPSI super-resolution networks as a BasicSR plugin, with a CPU path',
    long_description=long_description,
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.10',
    packages=find_packages(include=['mamba_sr_archs', 'mamba_sr_archs.*']),
    package_data={'mamba_sr_archs.ops': ['csrc/*.cu']},   # CUDA scan kernels, compiled at run time by NVRTC
    install_requires=[
        'basicsr>=1.4.2',
        'torch>=2.1',
        'torchvision>=0.16',
        'numpy',
        'opencv-python',
        'lmdb',
        'timm',
        'pyyaml',
        'tqdm',
        'scikit-image',  # sample images for scripts/make_demo_data.py
        'safetensors',  # .safetensors weights
        'setuptools',  # BasicSR imports distutils / pkg_resources at run time
    ],
    extras_require={
        'cuda': ['mamba-ssm', 'causal-conv1d'],
        'test': ['pytest'],
    },
    entry_points={'console_scripts': ['basicsr = mamba_sr_archs.cli:main']},
    classifiers=[
        'Programming Language :: Python :: 3',
        'Programming Language :: Python :: 3.11',
        'Programming Language :: Python :: 3.12',
        'License :: OSI Approved :: Apache Software License',
        'Topic :: Scientific/Engineering :: Image Processing',
    ],
)
