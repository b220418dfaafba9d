# The budget plan (`snakemake plan`) and the cross-stage report (`snakemake stages_report`).


rule plan:
    output:
        markdown="results/plan.md",
        json_path="results/plan.json",
    log:
        "logs/plan.log",
    localrule: True
    conda:
        CONDA_ENV
    threads: 1
    params:
        config=config,  # the plan estimates every job of the config
    script:
        "../workflow_scripts/plan.py"


rule stages_report:
    input:
        metrics=expand(
            "results/{stage}/eval/metrics.json", stage=STAGES[: config["evaluation"]["report_stages"] or len(STAGES)]
        ),
    output:
        figure=report(
            "results/stages/metrics.svg",
            caption="../report/stages.rst",
            category="Across stages",
        ),
        table="results/stages/metrics.md",
    log:
        "logs/stages_report.log",
    localrule: True
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **rule_resources("stages_report"),
    script:
        "../workflow_scripts/stages_report.py"
