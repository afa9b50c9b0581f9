"""Instructor-only grading tools around nbgrader: the ``course`` command, the hidden checks, the pipeline.

Nothing in this package ships to students: the student kit holds the released notebooks and a
``course_lib`` wheel without ``course_lib.solutions``. The modules, in the order a grading run uses them:

- :mod:`autograder.cli`: the ``course`` command; :mod:`autograder.demo`: ``course demo``;
- :mod:`autograder.course`: the private course root and the nbgrader runner;
- :mod:`autograder.release`: ``generate_assignment`` and the student kit;
- :mod:`autograder.exchange`: nbgrader's exchange (release, collect, release feedback);
- :mod:`autograder.intake`: submissions from an LMS zip;
- :mod:`autograder.student_files`: reading a student's files: regular files only, never through a link;
- :mod:`autograder.repairs`: staging a submission, repairing careless uploads;
- :mod:`autograder.tamper`: the static scan of students' cells;
- :mod:`autograder.preflight`: ``course doctor``, and the check before grading that the sandbox can start;
- :mod:`autograder.grading`: grading one student in the sandbox (:mod:`autograder.sandbox`), within
  :mod:`autograder.budgets`;
- :mod:`autograder.nbgrader_ext`, :mod:`autograder.judging`, :mod:`autograder.checks`,
  :mod:`autograder.records`: what runs inside nbgrader: nonces into test cells, probes in the
  student's kernel, judges in nbgrader's process;
- :mod:`autograder.events`, :mod:`autograder.report`: what nbgrader's process saw, and ``report.txt``;
- :mod:`autograder.gradebook`: sqlite or PostgreSQL gradebooks and the CSVs;
- :mod:`autograder.pipeline`: a class graded end to end; :mod:`autograder.watch`: each submission as
  it arrives;
- :mod:`autograder.shards`: ``--shard auto`` from a Kubernetes Indexed Job or a Slurm job array;
- :mod:`autograder.deadlines`, :mod:`autograder.late`: due dates, extensions, the late policy;
- :mod:`autograder.hints`: the likely bug named in the feedback, from the mutant library;
- :mod:`autograder.feedback_html`: the feedback pages' math (MathML, offline) and the grading
  machine's paths kept out of them;
- :mod:`autograder.class_report`: ``course report``; :mod:`autograder.term_report`: ``course report
  --term``; :mod:`autograder.similarity`: ``course similarity``; :mod:`autograder.lms`: ``course
  export --format canvas|moodle`` and the LMS's own roster files;
- :mod:`autograder.submissions`: known submissions (mutants, alternatives) for the self-tests.
"""
