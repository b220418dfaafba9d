"""Rule build_pairs: the stage's chosen/rejected pairs, their funnel and the SFT warm-up examples."""

from maximalcai.job import run_job
from maximalcai.pairs import run_build_pairs

run_job(snakemake, run_build_pairs)
