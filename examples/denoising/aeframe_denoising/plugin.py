"""The hooks aeframe calls: what this package registers."""
from aeframe import hookimpl

from aeframe_denoising.stripes import Stripes
from aeframe_denoising.technique import SaltAndPepperDenoising


@hookimpl
def register_techniques(register):
    register(SaltAndPepperDenoising())


@hookimpl
def register_datasets(register):
    register(Stripes())
