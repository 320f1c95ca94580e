"""Static outputs that end true: a live widget's text and HTML fallbacks follow its state.

Where no widget renders (nbconvert, GitHub, nbviewer) a cell keeps the text/plain and
text/html its output had when it was displayed: ``results`` showed "pending 4" for ever,
though its tasks finished a cell later (issue 17). So every output of a live widget gets
a ``display_id`` (a hook on ipykernel's display hook and display publisher adds
``transient.display_id`` to the message carrying the widget's view), and at the end of
every cell (IPython's ``post_execute``: still inside the cell, so nbclient, which reads
only the running cell's messages, takes it) each widget whose fallback changed since it
was sent is re-sent with ``update_display_data``. nbclient then rewrites the earlier
output in place, so the executed notebook ends with what was true at its end.

JupyterLab and Notebook 7 render the widget itself and update ``execute_result`` outputs
not at all; a ``display_data`` output is re-rendered there (once per cell end, only when
its numbers changed).

>>> outputs = StaticOutputs(shell)          # doctest: +SKIP
>>> outputs.close()                         # doctest: +SKIP
"""

from __future__ import annotations

import logging
import weakref

logger = logging.getLogger(__name__)

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PREFIX = "scatter-magics-"


class StaticOutputs:
    """Display ids for the live widgets' outputs, and their fallbacks re-sent on change."""

    def __init__(self, shell):
        self.shell = shell
        # display id -> the widget shown there, and the fallback text it was last sent with
        self.shown: "weakref.WeakValueDictionary[str, object]" = weakref.WeakValueDictionary()
        self.sent: dict[str, tuple[str, str]] = {}
        self._hooked = []
        for target in (getattr(shell, "displayhook", None), getattr(shell, "display_pub", None)):
            register = getattr(target, "register_hook", None)
            if register is not None:  # ipykernel's; a terminal IPython has no such hooks
                register(self._tag)
                self._hooked.append(target)
        if self._hooked:
            shell.events.register("post_execute", self.update)

    def close(self) -> None:
        for target in self._hooked:
            target.unregister_hook(self._tag)
        if self._hooked:
            self.shell.events.unregister("post_execute", self.update)
        self._hooked = []

    def _tag(self, msg: dict) -> dict:
        """The hook: give an output of one of our widgets a display id (kept if it has one)."""
        content = msg.get("content", {})
        view = content.get("data", {}).get(WIDGET_VIEW)
        widget = _live_widget(view.get("model_id")) if isinstance(view, dict) else None
        if widget is None or msg.get("header", {}).get("msg_type") == "update_display_data":
            return msg
        transient = content.get("transient") or {}
        display_id = transient.get("display_id") or PREFIX + view["model_id"]
        content["transient"] = {**transient, "display_id": display_id}
        self.shown[display_id] = widget
        data = content["data"]
        self.sent[display_id] = (data.get("text/plain", ""), data.get("text/html", ""))
        return msg

    def update(self) -> None:
        """Re-send every shown widget whose fallback changed (``post_execute``)."""
        for display_id in list(self.sent):
            widget = self.shown.get(display_id)
            if widget is None:  # closed and collected: nothing will change any more
                self.sent.pop(display_id, None)
                continue
            try:
                data, metadata = widget._repr_mimebundle_()
            except Exception:  # a fallback that cannot be drawn must not fail the cell
                logger.warning("could not redraw a widget's static output", exc_info=True)
                continue
            fallback = (data.get("text/plain", ""), data.get("text/html", ""))
            if fallback == self.sent[display_id]:
                continue
            self.sent[display_id] = fallback
            self.shell.display_pub.publish(data, metadata,
                                           transient={"display_id": display_id}, update=True)


def _live_widget(model_id):
    """Our widget with that model id, if it is one (ipywidgets keeps every open widget)."""
    from ipywidgets.widgets.widget import _instances

    from .widget import _LiveWidget

    widget = _instances.get(model_id)
    return widget if isinstance(widget, _LiveWidget) else None
