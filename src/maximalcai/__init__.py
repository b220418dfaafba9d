"""maximalcai: progressive Constitutional AI from a base language model.

The library holds all logic; the Snakemake rules in ``rules/`` call thin scripts in
``workflow_scripts/`` that unpack ``snakemake.*`` and call one function from here.
"""

__version__ = "0.1.0"
