import { Notification, ToolbarButton } from '@jupyterlab/apputils';
import { DocumentRegistry } from '@jupyterlab/docregistry';
import { INotebookModel, NotebookPanel } from '@jupyterlab/notebook';
import { KernelMessage } from '@jupyterlab/services';
import { CommandRegistry } from '@lumino/commands';
import { DisposableDelegate, IDisposable } from '@lumino/disposable';

import { exportIcon } from './icons';
import { pyString } from './model';

/** The command that exports the active notebook kernel's feature views. */
export const EXPORT_COMMAND = 'jupyter-features:export';

const MARKER = '__jupyter_features_export__';

/**
 * Python run in the notebook's kernel: the same entry point as the notebook's own
 * Export to registry widget (jupyter_features.widgets.export_session), whose JSON
 * answer is printed as one line after MARKER.
 */
export const EXPORT_CODE = `
def _jupyter_features_export():
    import json
    try:
        import jupyter_features as jf
        import jupyter_features.widgets as widgets
    except ImportError as exc:
        result = {"ok": False, "message": f"jupyter-features is not installed in this kernel ({exc}); pip install jupyter-features in the kernel's environment"}
    else:
        result = widgets.export_session(jf.workspace())
    print(${pyString(MARKER)} + json.dumps(result))
_jupyter_features_export()
del _jupyter_features_export
`;

export interface IExportedVersion {
  name: string;
  version: number;
  unchanged: boolean;
}

export interface IExportResult {
  ok: boolean;
  message?: string;
  empty?: boolean;
  registry?: string;
  versions?: IExportedVersion[];
}

/** Run the export in the notebook's kernel; never throws, failures are `ok: false`. */
export async function exportFromKernel(panel: NotebookPanel | null): Promise<IExportResult> {
  if (!panel) {
    return { ok: false, message: 'Open a notebook whose kernel defines feature views, then export.' };
  }
  const context = panel.sessionContext;
  await context.ready;
  const kernel = context.session?.kernel;
  if (!kernel || context.hasNoKernel) {
    return {
      ok: false,
      message:
        `${panel.title.label} has no running kernel: start one (Kernel ▸ Restart Kernel), ` +
        'run the cells that define your feature views, then export.'
    };
  }
  const lines: string[] = [];
  const future = kernel.requestExecute({
    code: EXPORT_CODE,
    silent: false,
    store_history: false,
    allow_stdin: false,
    stop_on_error: false
  });
  future.onIOPub = (msg: KernelMessage.IIOPubMessage) => {
    if (KernelMessage.isStreamMsg(msg) && msg.content.name === 'stdout') {
      lines.push(msg.content.text);
    }
  };
  const reply = await future.done;
  if (reply.content.status === 'error') {
    const content = reply.content as KernelMessage.IReplyErrorContent;
    return { ok: false, message: `the kernel failed to export: ${content.ename}: ${content.evalue}` };
  }
  const line = lines
    .join('')
    .split('\n')
    .find(l => l.startsWith(MARKER));
  if (!line) {
    return {
      ok: false,
      message: `the kernel (${kernel.name}) did not answer the export; it needs a Python kernel with jupyter-features installed`
    };
  }
  return JSON.parse(line.slice(MARKER.length)) as IExportResult;
}

/** Show the outcome of an export as a notification. */
export function notifyExport(result: IExportResult): void {
  if (!result.ok) {
    const show = result.empty ? Notification.warning : Notification.error;
    show(`Export to registry: ${result.message}`, { autoClose: 10000 });
    return;
  }
  const versions = (result.versions ?? [])
    .map(v => `${v.name} v${v.version}${v.unchanged ? ' (unchanged)' : ''}`)
    .join(', ');
  Notification.success(`Exported ${versions} to the registry ${result.registry ?? ''}`.trim(), {
    autoClose: 8000
  });
}

/** Adds the Export to registry button to every notebook's toolbar. */
export class ExportButtonExtension
  implements DocumentRegistry.IWidgetExtension<NotebookPanel, INotebookModel>
{
  constructor(private readonly commands: CommandRegistry) {}

  createNew(panel: NotebookPanel): IDisposable {
    const button = new ToolbarButton({
      className: 'jp-FeaturesExportButton',
      icon: exportIcon,
      label: 'Export to registry',
      tooltip: "Export this notebook kernel's feature views to the feature registry",
      onClick: () => {
        void this.commands.execute(EXPORT_COMMAND, { origin: panel.id });
      }
    });
    panel.toolbar.insertItem(10, 'jupyterFeaturesExport', button);
    return new DisposableDelegate(() => button.dispose());
  }
}
