// Frontend extension of the mvs2v node pack (served from WEB_DIRECTORY, loaded by ComfyUI's frontend).
//
// * MV-S2V Reference Set: subject inputs grow as you connect them (always one free input at the end,
//   disconnected ones close up), so any number of subjects (up to 16) can be wired without clutter.
// * MV-S2V Reference Set / Load Reference Folder: after a run, a slot grid is drawn on the node:
//   one row per subject, one cell per view slot (F/L/B/R or the yaw), filled cells in green with the
//   frontal view starred, empty cells hatched with the empty-slot mode. The full preview image
//   (letterboxed views) is shown by ComfyUI under it.
import { app } from "../../scripts/app.js";

const MAX_SUBJECTS = 16;
const SUBJECT_TYPE = "MVS2V_SUBJECT";
const GRID_NODES = ["MVS2VReferenceSet", "MVS2VLoadReferenceFolder"];
const SHORT = { front: "F", left: "L", back: "B", right: "R" };

function isSubjectInput(input) {
  return input && typeof input.name === "string" && input.name.startsWith("subject_");
}

function syncSubjectInputs(node) {
  if (!node.inputs) return;
  for (let i = node.inputs.length - 1; i >= 0; i--) {
    if (isSubjectInput(node.inputs[i]) && node.inputs[i].link == null) node.removeInput(i);
  }
  let k = 1;
  for (const input of node.inputs) {
    if (!isSubjectInput(input)) continue;
    input.name = `subject_${k}`;
    input.label = `subject ${k}`;
    k++;
  }
  if (k <= MAX_SUBJECTS) node.addInput(`subject_${k}`, SUBJECT_TYPE, { label: `subject ${k}` });
  const size = node.computeSize();
  node.setSize([Math.max(node.size[0], size[0]), Math.max(node.size[1], size[1])]);
  node.setDirtyCanvas?.(true, true);
}

function drawSlotGrid(node, ctx) {
  const layout = node.mvs2vLayout;
  if (!layout || node.flags?.collapsed) return;
  const perSubject = layout.slots_per_subject;
  const rows = [];
  for (let i = 0; i < layout.slots.length; i += perSubject) rows.push(layout.slots.slice(i, i + perSubject));
  const cell = 22, gap = 3, nameWidth = 90;
  const height = rows.length * (cell + gap) + 18;
  const top = node.size[1] - height;
  ctx.save();
  ctx.font = "11px sans-serif";
  ctx.fillStyle = "#aaa";
  ctx.fillText(`slots (${layout.empty_slot_mode} for empty)`, 8, top + 10);
  rows.forEach((row, r) => {
    const y = top + 16 + r * (cell + gap);
    ctx.fillStyle = "#ddd";
    ctx.fillText(String(row[0].subject).slice(0, 13), 8, y + 15);
    row.forEach((slot, c) => {
      const x = nameWidth + c * (cell + gap);
      ctx.fillStyle = slot.filled ? "#2f7d32" : "#555";
      ctx.fillRect(x, y, cell, cell);
      if (!slot.filled) {
        ctx.strokeStyle = "#a33";
        ctx.beginPath();
        ctx.moveTo(x, y); ctx.lineTo(x + cell, y + cell);
        ctx.moveTo(x + cell, y); ctx.lineTo(x, y + cell);
        ctx.stroke();
      }
      ctx.fillStyle = "#fff";
      const label = (SHORT[slot.view] ?? String(slot.view).replace("°", "")) + (slot.frontal && slot.filled ? "*" : "");
      ctx.fillText(label.slice(0, 3), x + 4, y + 15);
    });
  });
  ctx.restore();
}

app.registerExtension({
  name: "mvs2v.nodes",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name === "MVS2VReferenceSet") {
      const onNodeCreated = nodeType.prototype.onNodeCreated;
      nodeType.prototype.onNodeCreated = function () {
        const r = onNodeCreated?.apply(this, arguments);
        setTimeout(() => syncSubjectInputs(this), 0);
        return r;
      };
      const onConfigure = nodeType.prototype.onConfigure;
      nodeType.prototype.onConfigure = function () {
        const r = onConfigure?.apply(this, arguments);
        setTimeout(() => syncSubjectInputs(this), 0);
        return r;
      };
      const onConnectionsChange = nodeType.prototype.onConnectionsChange;
      nodeType.prototype.onConnectionsChange = function (type) {
        const r = onConnectionsChange?.apply(this, arguments);
        if (type === 1 /* input */) setTimeout(() => syncSubjectInputs(this), 0);
        return r;
      };
    }
    if (GRID_NODES.includes(nodeData.name)) {
      const onExecuted = nodeType.prototype.onExecuted;
      nodeType.prototype.onExecuted = function (message) {
        const r = onExecuted?.apply(this, arguments);
        const layout = message?.mvs2v_layout?.[0];
        if (layout) {
          this.mvs2vLayout = layout;
          const rows = layout.slots.length / layout.slots_per_subject;
          this.setSize([Math.max(this.size[0], 90 + layout.slots_per_subject * 25 + 10),
                        Math.max(this.size[1], this.computeSize()[1] + rows * 25 + 30)]);
          this.setDirtyCanvas?.(true, true);
        }
        return r;
      };
      const onDrawForeground = nodeType.prototype.onDrawForeground;
      nodeType.prototype.onDrawForeground = function (ctx) {
        const r = onDrawForeground?.apply(this, arguments);
        drawSlotGrid(this, ctx);
        return r;
      };
    }
  },
});
