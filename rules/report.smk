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
