"""A pipeline written the way scitq v1's published ones are (gmtsciencedev/scitq-examples:
metaphlan4, kraken2): nothing in it knows about scitq v2.

Phase 1: one task per sample (a folder of gzipped FASTQ files), its FASTQs as one
space-separated input string, a shared ``|untar`` database as resource, in a container,
on workers deployed from provider ``ovh``; joined with retries. Phase 2: one task over
the whole output folder of phase 1. Then the result is synced to a local folder.

    python v1_read_counts.py SOURCE_S3 DATABASE_S3 OUTPUT_S3 FINAL_S3 --image IMAGE
"""

from __future__ import annotations

import argparse
import os

from scitq.fetch import list_content, sync
from scitq.lib import Server

DEFAULT_REGION = "GRA11"
DEFAULT_PROVIDER = "ovh"
MAX_RETRY_PHASE1 = 2
MAX_RETRY_PHASE2 = 3


def read_counts(
    scitq_server,
    batch,
    source_s3,
    database_s3,
    output_s3,
    final_s3,
    image,
    local,
    region=DEFAULT_REGION,
    provider=DEFAULT_PROVIDER,
    workers=2,
):
    s = Server(scitq_server, style="object")

    source_s3 = source_s3.rstrip("/")
    output_s3 = output_s3.rstrip("/")
    fastqs = [item.name for item in list_content(source_s3) if item.name.endswith("fastq.gz")]
    samples = {}
    for fastq in fastqs:
        sample = fastq.split("/")[-2]
        if sample not in samples:
            samples[sample] = [fastq]
        else:
            samples[sample].append(fastq)

    tasks = []
    for sample, files in samples.items():
        command = f"""sh -c 'zcat /input/*.fastq.gz | grep -c "^@" > /output/{sample}.count \
            && cat /resource/db/marker.txt >> /output/{sample}.count' """
        tasks.append(
            s.task_create(
                command=command,
                name=sample,
                batch=batch,
                input=" ".join(files),
                output=f"{output_s3}/{sample}",
                resource=f"{database_s3}|untar",
                container=image,
            )
        )
    if workers:
        s.worker_deploy(
            number=workers,
            batch=batch,
            region=region,
            provider=provider,
            flavor="c2-120",
            concurrency=2,
            prefetch=1,
        )
    s.join(tasks, retry=MAX_RETRY_PHASE1)

    command = """sh -c "
cd /input
for sample in *
do
    echo $sample $(head -n 1 $sample/$sample.count) >> /output/counts.tsv
done
" """
    task = s.task_create(
        name=batch,
        batch=batch + "_p2",
        input=output_s3 + "/",
        container=image,
        output=final_s3,
        command=command,
    )
    if workers:
        s.worker_deploy(
            number=1,
            batch=batch + "_p2",
            region=region,
            provider=provider,
            flavor="c2-30",
            concurrency=1,
            prefetch=1,
        )
    s.join([task], retry=MAX_RETRY_PHASE2)

    sync(final_s3, local)


if __name__ == "__main__":
    SCITQ_SERVER = os.environ.get("SCITQ_SERVER")
    parser = argparse.ArgumentParser(prog="read counts", description="Count FASTQ reads")
    parser.add_argument("source_s3")
    parser.add_argument("database_s3")
    parser.add_argument("output_s3")
    parser.add_argument("final_s3")
    parser.add_argument("--image", required=True)
    parser.add_argument("--batch", default="counts")
    parser.add_argument("--local", default="results")
    parser.add_argument("--scitq", default=SCITQ_SERVER)
    args = parser.parse_args()
    read_counts(
        args.scitq,
        args.batch,
        args.source_s3,
        args.database_s3,
        args.output_s3,
        args.final_s3,
        args.image,
        args.local,
    )
