"""The one place an error becomes a Blender report: an operator's ERROR line says
what went wrong and what to do (a RunwayError's message and hint; the words of an
OSError), and the operator ends CANCELLED."""


def report_error(op, error) -> set:
    op.report({"ERROR"}, str(error))
    return {"CANCELLED"}
