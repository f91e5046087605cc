// Runs a Flamenco job compiler script the way Flamenco Manager does (one script, the
// Manager's globals), with those globals stubbed: author.Task, author.Command,
// frameChunker, print. Prints {"job_type": JOB_TYPE, "tasks": [...]} as JSON.
//
//   node flamenco_harness.js COMPILER.js '{"settings": {...}}'
"use strict";
const fs = require("fs");
const vm = require("vm");

// Flamenco's frameChunker: "1-10, 15" in chunks of N frames, each chunk written back as
// a compact range list ("1-3,5"): non-contiguous chunks happen.
function explode(frames) {
  const out = [];
  for (const part of String(frames).split(",")) {
    const p = part.trim();
    if (!p) continue;
    const m = /^(-?\d+)(?:\s*-\s*(-?\d+))?$/.exec(p);
    if (!m) throw new Error(`invalid frame range ${JSON.stringify(p)}`);
    const a = Number(m[1]), b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) throw new Error(`backwards frame range ${p}`);
    for (let f = a; f <= b; f++) out.push(f);
  }
  return out;
}

function compact(frames) {
  const parts = [];
  let start = frames[0], prev = frames[0];
  for (const f of frames.slice(1).concat([null])) {
    if (f !== null && f === prev + 1) { prev = f; continue; }
    parts.push(start === prev ? `${start}` : `${start}-${prev}`);
    start = prev = f;
  }
  return parts.join(",");
}

function frameChunker(frames, chunkSize) {
  const all = explode(frames);
  const size = Math.max(1, Number(chunkSize) || 1);
  const chunks = [];
  for (let i = 0; i < all.length; i += size) chunks.push(compact(all.slice(i, i + size)));
  return chunks;
}

const tasks = [];
const author = {
  Task(name, type) {
    const task = { name, type, commands: [], dependencies: [] };
    return {
      _task: task,
      addCommand(cmd) { task.commands.push(cmd); },
      addDependency(other) { task.dependencies.push(other._task.name); },
    };
  },
  Command(type, parameters) { return { type, parameters }; },
};

const [compilerPath, jobJson] = process.argv.slice(2);
const job = JSON.parse(jobJson);
job.addTask = (t) => tasks.push(t._task);
const printed = [];
const context = vm.createContext({
  author, frameChunker, print: (...a) => printed.push(a.join(" ")), console,
});
vm.runInContext(fs.readFileSync(compilerPath, "utf8") +
                "\n;globalThis.__JOB_TYPE = JOB_TYPE; globalThis.__compile = compileJob;",
                context, { filename: compilerPath });
context.__compile(job);
process.stdout.write(JSON.stringify({ job_type: context.__JOB_TYPE, tasks, printed }));
