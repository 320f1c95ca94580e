// The notebook widget's stylesheet first (the sidebar and panel reuse its classes), then ours.
import '../../scatter_magics/notebook/static/widget.css';
import './base.css';
