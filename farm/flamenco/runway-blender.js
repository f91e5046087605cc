// SPDX-License-Identifier: GPL-3.0-or-later
//
// Runway for Blender: a Flamenco job type (a job compiler script). Put this file in the
// Manager's `scripts/` folder next to its executable and restart the Manager; the job type
// "Runway for Blender" then shows up in the Blender add-on's submission panel.
//
// Each task is one chunk of frames in ONE Blender (the same command as the Open Job
// Description template in farm/openjd/runway-blender.yaml):
// - with a job file: `blender -b --addons MOD FILE.blend --python-exit-code 1
//   --python-expr <run_job> -- JOBFILE CHUNK MOD`: bpy.ops.runway.run_job on the chunk's
//   frames (the job file's model, inputs and outputs);
// - without one: `blender -b --addons MOD FILE.blend --python-exit-code 1
//   --python-expr <watch> --render-frame CHUNK --python-expr <check> -- MOD`: the frames are
//   rendered and every one goes through the scene's render post-processing; the task fails
//   when any frame of the chunk was not post-processed.
// The model starts once per chunk and stays warm for all its frames. Flamenco SIGKILLs
// Blender when a task is cancelled; the add-on's model servers watch their Blender and end
// themselves within seconds.
//
// The extension must be installed on every Worker (Flamenco does not distribute add-ons):
// unpacked under $BLENDER_SYSTEM_EXTENSIONS/system/runway/, module bl_ext.system.runway.

const JOB_TYPE = {
  label: "Runway for Blender",
  description: "Render in chunks of frames, every frame through a Runway model",
  settings: [
    {
      key: "frames", type: "string", required: true,
      eval: "f'{C.scene.frame_start}-{C.scene.frame_end}'",
      evalInfo: { showLinkButton: true, description: "Scene frame range" },
      description: "Frames to run. Examples: '47', '1-30', '3, 5-10, 47-327'",
    },
    {
      key: "chunk_size", type: "int32", default: 4, visible: "submission",
      description: "Frames per task: one Blender and one model start per chunk",
    },
    {
      key: "job_file", type: "string", subtype: "file_path", default: "",
      visible: "submission",
      description: "A Runway job file (JSON: model, inputs, outputs). Empty: render the " +
        "frames with the scene's render post-processing",
    },
    {
      key: "addon_module", type: "string", default: "bl_ext.system.runway",
      visible: "submission",
      description: "The installed extension's module (bl_ext.system.runway for the " +
        "System extensions folder)",
    },
    // Automatically filled by the submission add-on.
    {
      key: "blendfile", type: "string", required: true, visible: "web",
      description: "Path of the Blend file to render",
    },
  ],
};

// Runs before the frames and after them (Blender keeps driver_namespace between the two):
// before, it watches each frame's post-processing result; after, it exits 1 when any
// frame was not post-processed. Blender runs a whole render cycle per frame of
// --render-frame, so the add-on's own exit status sees only the last one.
const POST_WATCH = [
  "import importlib, sys, bpy",
  "addon = sys.argv[sys.argv.index('--') + 1]",
  "post = importlib.import_module(addon + '.blender.postprocess')",
  "seen = bpy.app.driver_namespace['runway_farm_chunk'] = {'done': [], 'bad': []}",
  "def _runway_farm_frame(scene, *_args):",
  "    state = post.last_report()",
  "    if state is None: seen['bad'].append('render post-processing is off')",
  "    elif state.plan is None: seen['bad'].append(state.error or 'no post-processing plan')",
  "    elif state.failed: seen['bad'].extend(f'frame {f}: {m}' for f, m in sorted(state.failed.items()))",
  "    elif not state.done: seen['bad'].append('a frame was not post-processed')",
  "    else: seen['done'].extend(sorted(state.done))",
  "_runway_farm_frame = bpy.app.handlers.persistent(_runway_farm_frame)",
  "bpy.app.handlers.render_complete.append(_runway_farm_frame)",
  "bpy.app.handlers.render_cancel.append(_runway_farm_frame)",
].join("\n");

const POST_CHECK = [
  "import importlib, sys, bpy",
  "addon = sys.argv[sys.argv.index('--') + 1]",
  "seen = bpy.app.driver_namespace['runway_farm_chunk']",
  "print(f\"Runway: post-processed frames {seen['done']}\", flush=True)",
  "if seen['bad']:",
  "    print('Runway: failed: ' + '; '.join(seen['bad']), file=sys.stderr, flush=True)",
  "    importlib.import_module(addon + '.blender.engine').shutdown()",
  "    sys.exit(1)",
].join("\n");

const RUN_JOB = [
  "import importlib, sys, bpy",
  "job, frames, addon = sys.argv[sys.argv.index('--') + 1:][:3]",
  "try:",
  "    result = bpy.ops.runway.run_job(filepath=job, frames=frames)",
  "except RuntimeError as e:  # in -b, Blender raises the operator's error report",
  "    result = str(e).removeprefix('Error: ').strip()",
  "finally:",
  "    importlib.import_module(addon + '.blender.engine').shutdown()",
  "if result != {'FINISHED'}:",
  "    print(f'Runway: job failed on frames {frames}: {result}', file=sys.stderr, flush=True)",
  "    sys.exit(1)",
].join("\n");

// Blender's --render-frame writes ranges as 1..3 ("-3" would mean "3 before the end");
// job files take 1-3 as they are.
function blenderFrames(chunk) {
  return chunk.replace(/\s+/g, "").replace(/(\d)-/g, "$1..");
}

function compileJob(job) {
  print("Runway for Blender job submitted");
  const settings = job.settings;
  const addon = settings.addon_module || "bl_ext.system.runway";
  const jobFile = settings.job_file || "";
  const chunks = frameChunker(settings.frames, settings.chunk_size);
  for (const chunk of chunks) {
    const frames = chunk.replace(/\s+/g, "");
    let args;
    if (jobFile) {
      args = ["--python-exit-code", "1", "--python-expr", RUN_JOB, "--", jobFile, frames, addon];
    } else {
      args = ["--python-exit-code", "1", "--python-expr", POST_WATCH,
              "--render-frame", blenderFrames(frames),
              "--python-expr", POST_CHECK, "--", addon];
    }
    const task = author.Task(`runway-${frames}`, "blender");
    task.addCommand(author.Command("blender-render", {
      exe: "{blender}",
      exeArgs: "{blenderArgs}",
      argsBefore: ["--addons", addon],
      blendfile: settings.blendfile,
      args: args,
    }));
    job.addTask(task);
  }
}
