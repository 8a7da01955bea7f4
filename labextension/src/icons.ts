import { LabIcon } from '@jupyterlab/ui-components';

const FEATURES_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <rect x="3" y="3" width="7" height="7" rx="1.5"/>
    <rect x="14" y="3" width="7" height="7" rx="1.5" opacity="0.7"/>
    <rect x="3" y="14" width="7" height="7" rx="1.5" opacity="0.7"/>
    <path d="M17.5 13.5a1 1 0 0 1 1 1v2h2a1 1 0 0 1 0 2h-2v2a1 1 0 0 1-2 0v-2h-2a1 1 0 0 1 0-2h2v-2a1 1 0 0 1 1-1z"/>
  </g>
</svg>`;

const EXPORT_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M12 3l5 5h-3.5v6h-3V8H7l5-5z"/>
    <path d="M4 15h2v4h12v-4h2v5a1 1 0 0 1-1 1H5a1 1 0 0 1-1-1v-5z"/>
  </g>
</svg>`;

/** The Features sidebar's tab icon. */
export const featuresIcon = new LabIcon({ name: 'jupyter-features:features', svgstr: FEATURES_SVG });

/** The Export to registry button's icon. */
export const exportIcon = new LabIcon({ name: 'jupyter-features:export', svgstr: EXPORT_SVG });
