// jsdom lacks what @grafana/ui reaches for; these are the stand-ins create-plugin sets up.
import '@testing-library/jest-dom';
import { TextDecoder, TextEncoder } from 'util';

Object.assign(global, { TextDecoder, TextEncoder });

Object.defineProperty(global, 'matchMedia', {
  writable: true,
  value: (query) => ({
    matches: false,
    media: query,
    onchange: null,
    addListener: jest.fn(),
    removeListener: jest.fn(),
    addEventListener: jest.fn(),
    removeEventListener: jest.fn(),
    dispatchEvent: jest.fn(),
  }),
});

// Canvas: only text measuring (Combobox sizes its menu with it).
HTMLCanvasElement.prototype.getContext = () => ({
  font: '',
  measureText: (text) => ({ width: String(text).length * 8 }),
});

// Menus and scroll containers observe their size and visibility; jsdom has neither observer.
class NoopObserver {
  observe() {}
  unobserve() {}
  disconnect() {}
  takeRecords() {
    return [];
  }
}
Object.assign(global, { IntersectionObserver: NoopObserver, ResizeObserver: NoopObserver });

// Combobox virtualises its menu and renders only the options that fit the menu's measured size,
// which jsdom reports as zero: give elements a size so that the options render.
Object.defineProperty(Element.prototype, 'getBoundingClientRect', {
  configurable: true,
  value: () => ({ width: 400, height: 400, top: 0, left: 0, bottom: 400, right: 400, x: 0, y: 0, toJSON: () => {} }),
});
for (const side of ['offsetHeight', 'offsetWidth', 'clientHeight', 'clientWidth']) {
  Object.defineProperty(HTMLElement.prototype, side, { configurable: true, get: () => 400 });
}

// i18next (under @grafana/i18n) advertises itself on console.info at every init; keep test output for tests.
const consoleInfo = console.info;
console.info = (...args) => {
  if (typeof args[0] === 'string' && args[0].includes('i18next is made possible')) {
    return;
  }
  consoleInfo(...args);
};

// CSS is not under test, and jsdom has no layout to apply it to; yet its getComputedStyle matches
// every stylesheet rule against the element and each of its ancestors, and userEvent (the
// pointer-events check), floating-ui (menu placement) and role queries (visibility) call it for
// element after element. With @grafana/ui's emotion rules in the document, opening one Combobox
// cost seconds on a loaded machine. Emotion still generates its class names; the rules just never
// reach the document. Both copies of @emotion/css: ours and the one @grafana/ui resolves.
const path = require('path');
for (const from of [__dirname, path.dirname(require.resolve('@grafana/ui/package.json'))]) {
  const { cache } = require(require.resolve('@emotion/css', { paths: [from] }));
  cache.sheet.insert = () => {};
}

// Menu and tooltip placement is not under test either, and floating-ui computes it by reading the
// computed style of every ancestor, on every render of an open menu, for each candidate placement.
// Menus open at 0,0 and stay there.
jest.mock('@floating-ui/dom', () => ({
  ...jest.requireActual('@floating-ui/dom'),
  computePosition: async (_reference, _floating, options = {}) => ({
    x: 0,
    y: 0,
    placement: options.placement ?? 'bottom',
    strategy: options.strategy ?? 'absolute',
    middlewareData: {},
  }),
  autoUpdate: (_reference, _floating, update) => {
    update();
    return () => {};
  },
}));
