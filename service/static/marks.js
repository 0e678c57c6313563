/**
 * Everything marked on the image: the scribbles (a LabelMap) and the prompts (one box and any
 * number of clicks, in image pixels), with one undo history across both, so Undo takes back the
 * last mark of either kind and Clear clears both as one step.
 *
 * A prompt names one object. The API gives the object class 1 and its surroundings class 2 (the
 * GrabCut data's values), while the page's classes start the other way round: "background",
 * "foreground". A round with prompts therefore swaps classes 1 and 2 on the way out and back
 * (`swapObject`), so a box marks the page's foreground, and a background stroke beside it still
 * means background.
 */
import { LabelMap } from "./labelmap.js";

const HISTORY_LIMIT = 200;
const NO_PROMPTS = Object.freeze({ box: null, points: [] });
// The page's classes a prompt marks: the object is its foreground, what lies off it its background.
const [BACKGROUND, OBJECT] = [1, 2];

/** Swap classes 1 and 2 of label `values`: the page's classes to the API's for a round with prompts, or back. */
export const swapObject = (values) => values.map((value) => (value === 1 ? 2 : value === 2 ? 1 : value));

export class Marks {
  constructor(width, height) {
    // Its own history holds only strokes, at most as many as this one holds edits, so the two never part.
    this.labels = new LabelMap(width, height, HISTORY_LIMIT);
    this.prompts = NO_PROMPTS; // { box: {x0, y0, x1, y1} (x1, y1 excluded) or null, points: [[x, y, label], ...] }
    this.done = [];
    this.undone = [];
  }

  get canUndo() {
    return this.done.length > 0;
  }

  get canRedo() {
    return this.undone.length > 0;
  }

  get prompted() {
    return Boolean(this.prompts.box || this.prompts.points.length);
  }

  /** How many of the page's classes the marks name: those painted, and those the prompts stand for. */
  get classCount() {
    const classes = new Set();
    this.labels.counts.forEach((count, value) => value > 0 && count > 0 && classes.add(value));
    if (this.prompts.box) classes.add(OBJECT).add(BACKGROUND);
    for (const [, , label] of this.prompts.points) classes.add(label ? OBJECT : BACKGROUND);
    return classes.size;
  }

  /** End the stroke begun on `labels`: one undo step if it changed anything. */
  endStroke() {
    if (this.labels.end()) this.record(true);
  }

  /** LabelMap.paintWhere, as one undo step. */
  paintWhere(values, value) {
    if (this.labels.paintWhere(values, value)) this.record(true);
  }

  /** Draw the box, replacing the one before. */
  setBox(box) {
    this.record(false, { ...this.prompts, box });
  }

  /** Add a click on pixel (x, y): `label` 1 on the object, 0 off it. */
  addPoint(x, y, label) {
    this.record(false, { ...this.prompts, points: [...this.prompts.points, [x, y, label]] });
  }

  /** Erase the strokes and prompts, as one undo step. Returns whether there were any. */
  clear() {
    const painted = this.labels.clear();
    if (!painted && !this.prompted) return false;
    this.record(painted, NO_PROMPTS);
    return true;
  }

  undo() {
    const edit = this.done.pop();
    if (!edit) return false;
    if (edit.labels) this.labels.undo();
    this.prompts = edit.before;
    this.undone.push(edit);
    return true;
  }

  redo() {
    const edit = this.undone.pop();
    if (!edit) return false;
    if (edit.labels) this.labels.redo();
    this.prompts = edit.after;
    this.done.push(edit);
    return true;
  }

  /** The prompts as POST /segment's form fields: `box` "x0,y0,x1,y1", `points` JSON; those not drawn left out. */
  fields() {
    const { box, points } = this.prompts;
    return {
      ...(box && { box: [box.x0, box.y0, box.x1, box.y1].join(",") }),
      ...(points.length && { points: JSON.stringify(points) }),
    };
  }

  /** Record an edit: `labels`, whether `this.labels` recorded a step for it; `prompts`, those after it. */
  record(labels, prompts = this.prompts) {
    this.done.push({ labels, before: this.prompts, after: prompts });
    if (this.done.length > HISTORY_LIMIT) this.done.shift();
    this.undone = [];
    this.prompts = prompts;
  }
}
