"""``leadflow report funnel``: one flow's funnel as a self-contained HTML file.

``fold`` turns the event log into per-version statistics (streaming, pure
counting), ``stats`` holds the interval math, ``model`` the report's rows,
``layout`` places the flow's graph, ``charts`` draws PNGs with matplotlib,
``markup``, ``sections`` and ``page`` assemble the HTML, and ``build`` is the
shell that reads the log and writes the file.
"""
