import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Dialog,
  ICommandPalette,
  MainAreaWidget,
  showDialog,
  showErrorMessage
} from '@jupyterlab/apputils';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { Kernel } from '@jupyterlab/services';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';

import { ClusterPanel } from './panel';
import { ICluster, PolledResource } from './model';
import { NewClusterForm } from './new_cluster';
import { ISettings, readSettings } from './settings';
import { ListingPush } from './push';
import { requestAPI } from './request';
import { ClusterSidebar } from './sidebar';

/** The commands this extension adds; cluster commands take `{ id }`. */
export namespace CommandIDs {
  export const showSidebar = 'scatter-magics:show-sidebar';
  export const openCluster = 'scatter-magics:open-cluster';
  export const connectNotebook = 'scatter-magics:connect-notebook';
  export const stopCluster = 'scatter-magics:stop-cluster';
  export const startCluster = 'scatter-magics:start-cluster';
}

const clusterIcon = new LabIcon({
  name: 'scatter-magics:clusters',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
    '<circle cx="12" cy="5" r="3"/><circle cx="5" cy="18" r="3"/><circle cx="19" cy="18" r="3"/>' +
    '<path d="M11 8h2v3l5.2 4.2-1.2 1.6L12 12.8l-5 4-1.2-1.6L11 11z"/></g></svg>'
});

/**
 * The code a notebook runs to join a registered cluster: `%cluster connect <id>`,
 * after `%load_ext scatter_magics` only when the kernel lacks the magics, and after
 * `%cluster stop` when it is switching from a cluster it already uses.
 */
export function connectCode(
  clusterId: string,
  options: { loadExtension?: boolean; switching?: boolean } = {}
): string {
  return [
    options.loadExtension ? '%load_ext scatter_magics' : null,
    options.switching ? '%cluster stop' : null,
    `%cluster connect ${clusterId}`
  ]
    .filter(line => line !== null)
    .join('\n');
}

/** The cluster (other than `clusterId`) a kernel already started or joined, if any. */
export function clusterOfKernel(
  listing: ICluster[],
  kernelId: string,
  clusterId: string
): ICluster | undefined {
  return listing.find(
    c =>
      c.id !== clusterId &&
      (c.kernel_id === kernelId ||
        (c.connected ?? []).some(k => k.kernel_id === kernelId))
  );
}

/** Whether the kernel knows `%cluster`, asked without running anything in it. */
async function hasMagics(
  kernel: Kernel.IKernelConnection | null
): Promise<boolean> {
  if (!kernel) {
    return false;
  }
  try {
    const reply = await kernel.requestInspect({
      code: '%cluster',
      cursor_pos: 8,
      detail_level: 0
    });
    return reply.content.status === 'ok' && reply.content.found;
  } catch {
    return false;
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'scatter-magics:plugin',
  description:
    'A sidebar showing every scatter_magics cluster on this Jupyter server.',
  autoStart: true,
  requires: [],
  // All optional: Notebook 7 runs the plugin too, with or without a settings registry.
  optional: [
    INotebookTracker,
    ICommandPalette,
    ILayoutRestorer,
    ISettingRegistry
  ],
  activate
};

function activate(
  app: JupyterFrontEnd,
  notebooks: INotebookTracker | null,
  palette: ICommandPalette | null,
  restorer: ILayoutRestorer | null,
  registry: ISettingRegistry | null
): void {
  const settings: ISettings = readSettings(null);
  const clusters = new PolledResource<ICluster[]>(
    () => 'clusters',
    settings.pollInterval
  );
  // Pushed on change over a websocket; the once-a-second poll is only the fallback.
  new ListingPush(clusters);
  const sidebar = new ClusterSidebar({
    commands: app.commands,
    clusters,
    commandIds: {
      open: CommandIDs.openCluster,
      connect: CommandIDs.connectNotebook,
      stop: CommandIDs.stopCluster,
      start: CommandIDs.startCluster
    }
  });
  sidebar.title.icon = clusterIcon;
  app.shell.add(sidebar, 'left', { rank: 900 });
  restorer?.add(sidebar, sidebar.id);
  const panels = addCommands(app, clusters, notebooks, settings);
  if (registry) {
    registry
      .load(plugin.id)
      .then(loaded => {
        const apply = () => {
          Object.assign(settings, readSettings(loaded.composite));
          clusters.interval = settings.pollInterval;
          for (const panel of panels.values()) {
            if (!panel.isDisposed) {
              panel.content.pageSize = settings.pageSize;
              panel.content.pollInterval = settings.pollInterval;
            }
          }
        };
        apply();
        loaded.changed.connect(apply);
      })
      .catch(reason =>
        console.warn(
          'scatter-magics: settings not loaded, defaults used',
          reason
        )
      );
  }
  if (palette) {
    for (const command of [CommandIDs.showSidebar, CommandIDs.startCluster]) {
      palette.addItem({ command, category: 'Scatter clusters' });
    }
  }
}

function addCommands(
  app: JupyterFrontEnd,
  clusters: PolledResource<ICluster[]>,
  notebooks: INotebookTracker | null,
  settings: ISettings
): Map<string, MainAreaWidget<ClusterPanel>> {
  const panels = new Map<string, MainAreaWidget<ClusterPanel>>();
  const nameOf = (id: string) =>
    clusters.value?.find(c => c.id === id)?.name ?? id;

  app.commands.addCommand(CommandIDs.showSidebar, {
    label: 'Show Scatter Clusters',
    execute: () => app.shell.activateById('scatter-magics-sidebar')
  });

  app.commands.addCommand(CommandIDs.openCluster, {
    label: 'Open Cluster Futures',
    execute: args => {
      const id = args.id as string;
      let panel = panels.get(id);
      if (!panel || panel.isDisposed) {
        panel = new MainAreaWidget({
          content: new ClusterPanel(id, {
            pageSize: settings.pageSize,
            pollInterval: settings.pollInterval
          })
        });
        panel.id = `scatter-magics-panel-${id}`;
        panel.title.label = `Cluster: ${nameOf(id)}`;
        panel.title.icon = clusterIcon;
        panels.set(id, panel);
        app.shell.add(panel, 'main');
        if (!panel.parent) {
          // Notebook 7's notebook page keeps its one main widget (its shell refuses a
          // second): the panel opens in the right side panel there.
          app.shell.add(panel, 'right', { rank: 900 });
        }
      }
      app.shell.activateById(panel.id);
    }
  });

  app.commands.addCommand(CommandIDs.connectNotebook, {
    label: 'Connect the Active Notebook to This Cluster',
    execute: async args => {
      const notebook = notebooks?.currentWidget;
      if (!notebook) {
        await showErrorMessage(
          'No notebook',
          'Open a notebook first: the code is inserted into the active one.'
        );
        return;
      }
      const id = args.id as string;
      const kernel = notebook.sessionContext.session?.kernel ?? null;
      const current = kernel
        ? clusterOfKernel(clusters.value ?? [], kernel.id, id)
        : undefined;
      if (current) {
        const answer = await showDialog({
          title: 'Switch clusters',
          body: `This notebook already uses “${current.name}”. Disconnect from it (a cluster it started stops) and connect to “${nameOf(id)}”?`,
          buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Switch' })]
        });
        if (!answer.button.accept) {
          return;
        }
      }
      const loadExtension = !(await hasMagics(kernel));
      NotebookActions.insertBelow(notebook.content);
      const cell = notebook.content.activeCell;
      if (cell) {
        cell.model.sharedModel.setSource(
          connectCode(id, { loadExtension, switching: current !== undefined })
        );
      }
      app.shell.activateById(notebook.id);
    }
  });

  app.commands.addCommand(CommandIDs.stopCluster, {
    label: 'Stop Cluster',
    execute: async args => {
      const id = args.id as string;
      const answer = await showDialog({
        title: 'Stop cluster',
        body: `Stop “${nameOf(id)}” and all its workers? The notebook using it will see it closed.`,
        buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Stop' })]
      });
      if (!answer.button.accept) {
        return;
      }
      try {
        await requestAPI(`clusters/${encodeURIComponent(id)}`, {
          method: 'DELETE'
        });
      } catch (error) {
        await showErrorMessage('Could not stop the cluster', error as Error);
      }
      await clusters.refresh().catch(() => undefined);
    }
  });

  app.commands.addCommand(CommandIDs.startCluster, {
    label: 'Start a Shared Cluster',
    execute: async () => {
      const form = new NewClusterForm(settings.newCluster);
      const answer = await showDialog({
        title: 'New cluster, owned by the Jupyter server',
        body: form,
        focusNodeSelector: 'input',
        buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Start' })]
      });
      if (!answer.button.accept || answer.value === null) {
        return;
      }
      try {
        await requestAPI('clusters', {
          method: 'POST',
          body: JSON.stringify(answer.value)
        });
      } catch (error) {
        await showErrorMessage('Could not start a cluster', error as Error);
      }
      await clusters.refresh().catch(() => undefined);
    }
  });
  return panels;
}

export default plugin;
