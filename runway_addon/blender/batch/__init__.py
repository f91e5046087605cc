"""Job files run headless: ``bpy.ops.runway.run_job(filepath=...)``, the ``runway``
command line (``blender -c runway run-job ...``) and the farm templates.

A job file (core.jobfile) names a model, its inputs by source and its outputs by
target, and a frame range. One concept a module: resolve (the job's model, its targets,
the checks before anything starts), run (running a job over its frames, its report and
operator), log (the JSON-lines log), export (the Run panel's settings as a job file),
again (a result run again from its provenance), cli (the ``runway`` command line). This
module registers them and names what the rest of the add-on uses.
"""
# Besides registering, the names the farm templates, the benchmarks and the tests use
# (batch.run_job, batch.resolve_model, batch.check, ...).
from .again import (RESULT_KINDS, TARGET_OF_KIND, RUNWAY_OT_export_result_job,
                    RUNWAY_OT_run_again, job_from_provenance, record_of, run_again)
from .cli import cli, register, unregister
from .export import RUNWAY_OT_export_job, export_job
from .log import JsonLog
from .resolve import check, resolve_model, targets_of
from .run import BatchReport, RUNWAY_OT_run_job, run_job

classes = (RUNWAY_OT_run_job, RUNWAY_OT_export_job, RUNWAY_OT_run_again,
           RUNWAY_OT_export_result_job)
