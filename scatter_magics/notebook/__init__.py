"""What a notebook shows and runs: the magics, the live widgets, static fallbacks.

| module | holds |
|---|---|
| ``magics`` | ``%scatter``, ``%gather``, ``%cluster``: parsing and flow |
| ``session`` | the magics' own cluster: start, connect, stop, binding ``client`` |
| ``connect`` | ``connect(target)``: the one entry point to a running scheduler, whichever engine answers |
| ``arguments`` | option types, ``%scatter``'s keyed items, ``-w`` checked against the cluster |
| ``splitting`` | ``%scatter --split``: which values are cut into pieces, their keys; ``%gather`` joining them |
| ``piece_label`` | ``df[0/4]``: a piece's label that knows its rows, for the views |
| ``display`` | text/HTML output of the magics (``ScatterResult``, ``ClusterSummary``) |
| ``progress_bar`` | ``ProgressBar``: the progress callback drawn as a widget or a terminal line |
| ``interrupted`` | the one line a Ctrl-C leaves |
| ``resend`` | ``VariableSource``: a lost value read again from its unchanged variable |
| ``published`` | ``%scatter --publish`` and ``%gather`` of a published dataset |
| ``namespace`` | the user's namespace read and written by (dotted) name |
| ``failures`` | what a magic says when it fails: a sentence or two, or a task's own traceback |
| ``widget``, ``widget_model``, ``widget_keys``, ``widget_html``, ``cluster_table``, ``throttle`` | the live futures and cluster widgets (anywidget; JS and CSS in ``static/``) |
| ``feed`` | a widget's event subscription, its batches folded in and its flushes paced |
| ``plots_html``, ``plots_text`` | memory timelines and the task stream as static SVG, and as text |
| ``static_outputs`` | display ids for the widgets' outputs, their fallbacks re-sent as they change |

May import: the package's top level (``backend``, ``errors``, ``structure``, ``tokenize``,
``keys``, ``sizes``, ``discovery``, ``pieces``, ``summary``, ``history``, ``task_stream``). Never
``scatter_magics.engine`` or
``scatter_magics.dask``: engines are reached through ``backend.py`` only, so a notebook
session on Dask never imports the embedded engine.
"""
