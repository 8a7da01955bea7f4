import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Clipboard, ICommandPalette, Notification } from '@jupyterlab/apputils';
import { IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IStateDB } from '@jupyterlab/statedb';
import { ReadonlyJSONObject } from '@lumino/coreutils';

import {
  EXPORT_COMMAND,
  ExportButtonExtension,
  exportFromKernel,
  notifyExport
} from './exportButton';
import { exportIcon, featuresIcon } from './icons';
import { insertTrainingFrameCell } from './insertCell';
import { FeaturesSidebar, ISidebarState } from './sidebar';

const REFRESH_COMMAND = 'jupyter-features:refresh';
const OPEN_COMMAND = 'jupyter-features:open-sidebar';
const STATE_KEY = 'jupyter-features:sidebar';
const CATEGORY = 'Features';

/** The Features sidebar in the left area. */
const sidebarPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-features:sidebar',
  description: 'Browse the feature registry: search, filters, schema, SQL, versions, lineage.',
  autoStart: true,
  optional: [ILayoutRestorer, IStateDB, INotebookTracker, IEditorLanguageRegistry, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    stateDB: IStateDB | null,
    tracker: INotebookTracker | null,
    languages: IEditorLanguageRegistry | null,
    palette: ICommandPalette | null
  ) => {
    const sidebar = new FeaturesSidebar(
      {
        insert: (refs, entity) => insertTrainingFrameCell(tracker, refs, entity),
        copy: ref => {
          Clipboard.copyToSystem(ref);
          Notification.info(`Copied ${ref}`, { autoClose: 2500 });
        }
      },
      languages
    );
    app.shell.add(sidebar, 'left', { rank: 450 });
    restorer?.add(sidebar, sidebar.id);

    if (stateDB) {
      void Promise.all([stateDB.fetch(STATE_KEY), app.restored]).then(([saved]) => {
        if (saved) {
          sidebar.state = saved as unknown as ISidebarState;
        }
        sidebar.stateChanged.connect((_, state) => {
          void stateDB.save(STATE_KEY, state as unknown as ReadonlyJSONObject);
        });
      });
    }

    app.commands.addCommand(REFRESH_COMMAND, {
      label: 'Refresh the Features sidebar',
      icon: featuresIcon,
      execute: () => sidebar.refresh()
    });
    app.commands.addCommand(OPEN_COMMAND, {
      label: 'Open the Features sidebar',
      icon: featuresIcon,
      execute: () => app.shell.activateById(sidebar.id)
    });
    palette?.addItem({ command: OPEN_COMMAND, category: CATEGORY });
    palette?.addItem({ command: REFRESH_COMMAND, category: CATEGORY });
  }
};

/** The Export to registry notebook toolbar button and command. */
const exportPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-features:export',
  description: "Export the notebook kernel's feature views to the feature registry.",
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette],
  activate: (app: JupyterFrontEnd, tracker: INotebookTracker, palette: ICommandPalette | null) => {
    app.commands.addCommand(EXPORT_COMMAND, {
      label: 'Export feature views to registry',
      caption: "Export the notebook kernel's feature views to the feature registry",
      icon: exportIcon,
      execute: async args => {
        const origin = args['origin'] as string | undefined;
        const panel: NotebookPanel | null =
          (origin && tracker.find(p => p.id === origin)) || tracker.currentWidget;
        const result = await exportFromKernel(panel ?? null);
        notifyExport(result);
        if (result.ok && app.commands.hasCommand(REFRESH_COMMAND)) {
          await app.commands.execute(REFRESH_COMMAND);
        }
        return result;
      }
    });
    app.docRegistry.addWidgetExtension('Notebook', new ExportButtonExtension(app.commands));
    palette?.addItem({ command: EXPORT_COMMAND, category: CATEGORY });
  }
};

export default [sidebarPlugin, exportPlugin];
