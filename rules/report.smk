# Figures and pages for `snakemake --report results/report.html stageK_model`.


rule stage_report:
    input:
        training_log="results/{stage}/training_log.parquet",
        funnel="results/{stage}/pairs_funnel.parquet",
        metrics="results/{stage}/eval/metrics.json",
        generations=lambda wc: [
            f"results/eval/{model}/generations.parquet" for model in compared_models(wc.stage, None)
        ],
    output:
        training_figure=report(
            "results/{stage}/report/training.svg",
            caption="../report/training.rst",
            category="{stage}",
            subcategory="Training",
        ),
        funnel_figure=report(
            "results/{stage}/report/funnel.svg",
            caption="../report/funnel.rst",
            category="{stage}",
            subcategory="Data",
        ),
        eval_figure=report(
            "results/{stage}/report/eval.svg",
            caption="../report/eval.rst",
            category="{stage}",
            subcategory="Evaluation",
        ),
        examples=report(
            "results/{stage}/report/examples.html",
            caption="../report/examples.rst",
            category="{stage}",
            subcategory="Evaluation",
        ),
    log:
        "logs/{stage}/stage_report.log",
    localrule: True
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **rule_resources("stage_report"),
    script:
        "../workflow_scripts/stage_report.py"


rule browse_stage:
    input:
        unpack(contrast_table),
        instructions="results/{stage}/instructions.parquet",
        responses="results/{stage}/responses.parquet",
        critiques="results/{stage}/critiques.parquet",
        safety="results/{stage}/safety.parquet",
        preferences="results/{stage}/preferences.parquet",
        pairs="results/{stage}/pairs.parquet",
        funnel="results/{stage}/pairs_funnel.parquet",
        sft="results/{stage}/sft.parquet",
    output:
        page=report(
            "results/{stage}/browse.html",
            caption="../report/browse.rst",
            category="{stage}",
            subcategory="Data",
        ),
    log:
        "logs/{stage}/browse_stage.log",
    localrule: True
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **rule_resources("browse_stage"),
    script:
        "../workflow_scripts/browse_stage.py"
