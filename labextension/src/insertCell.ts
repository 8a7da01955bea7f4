import { Notification } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';

import { trainingFrameCell } from './model';

/**
 * Insert, below the active cell of the current notebook, a code cell that
 * builds a training frame with the feature references `refs`.
 */
export function insertTrainingFrameCell(
  tracker: INotebookTracker | null,
  refs: string[],
  entity: string[]
): boolean {
  const panel = tracker?.currentWidget ?? null;
  if (!panel) {
    Notification.warning(
      'Open a notebook first: "Insert into notebook" adds a cell to the active notebook.',
      { autoClose: 6000 }
    );
    return false;
  }
  const notebook = panel.content;
  NotebookActions.insertBelow(notebook);
  NotebookActions.changeCellType(notebook, 'code');
  const cell = notebook.activeCell;
  if (!cell) {
    return false;
  }
  cell.model.sharedModel.setSource(trainingFrameCell(refs, entity));
  void panel.revealed.then(() => cell.editor?.focus());
  return true;
}
