"""The hooks aeframe calls: what this package registers."""
from aeframe import hookimpl

from aeframe_vae.techniques import BetaVAETechnique, VQVAETechnique


@hookimpl
def register_techniques(register):
    register(BetaVAETechnique())
    register(VQVAETechnique())
