"""Instructor-only grading tools around nbgrader: the ``course`` command, the hidden checks, the pipeline.

Nothing in this package ships to students. The modules, in the order a grading run uses them:

- :mod:`autograder.cli`: the ``course`` command, each subcommand declared next to the function it runs
- :mod:`autograder.demo`: ``course demo``, the pipeline on known submissions
- :mod:`autograder.course`: the private course root and the nbgrader runner
- :mod:`autograder.release`: ``course release``: nbgrader's student version and the student kit
- :mod:`autograder.rubrics`: the written answers' rubrics, for the grader in formgrader only
- :mod:`autograder.exchange`: nbgrader's exchange: release, collect, release feedback
- :mod:`autograder.intake`: submissions from an LMS zip
- :mod:`autograder.student_files`: a student's files read as regular files only, never through a link
- :mod:`autograder.repairs`: a submission staged for nbgrader, careless uploads repaired
- :mod:`autograder.tamper`: the static scan of students' cells
- :mod:`autograder.preflight`: ``course doctor``, and the check before grading that the sandbox starts
- :mod:`autograder.pipeline`: ``course autograde``: a class graded end to end (``pipeline.autograde``)
- :mod:`autograder.grading`: one student graded (``grading.grade_student``)
- :mod:`autograder.sandbox`: each grading kernel in an unprivileged bubblewrap sandbox
- :mod:`autograder.budgets`: what one submission may cost the grader's side
- :mod:`autograder.nbgrader_ext`: the course's nbgrader preprocessors and collect
- :mod:`autograder.judging`: nonces into hidden test cells, verdicts from their records
- :mod:`autograder.checks`: the hidden checks, one module per activity
- :mod:`autograder.records`: what a probe measured in the kernel, for the judge outside it
- :mod:`autograder.events`: what nbgrader's own process saw
- :mod:`autograder.report`: each submission's problems and ``report.txt``
- :mod:`autograder.hints`: the likely bug named in the feedback, from the mutant library
- :mod:`autograder.feedback_html`: feedback pages with offline math and none of the machine's paths
- :mod:`autograder.gradebook`: sqlite or PostgreSQL gradebooks and the CSVs
- :mod:`autograder.watch`: ``course watch``: each submission graded as it arrives
- :mod:`autograder.shards`: ``--shard auto`` from a Kubernetes Indexed Job or a Slurm job array
- :mod:`autograder.deadlines`: due dates, extensions and lateness in the gradebook
- :mod:`autograder.late`: the late policy, a plugin of nbgrader's ``AssignLatePenalties``
- :mod:`autograder.class_report`: ``course report``, one assignment's class report
- :mod:`autograder.term_report`: ``course report --term``, every assignment of a term
- :mod:`autograder.similarity`: ``course similarity``, pairs of alike submissions for review
- :mod:`autograder.lms`: ``course export --format canvas|moodle`` and the LMS's own roster files
- :mod:`autograder.submissions`: known submissions (mutants, alternatives) for the self-tests and the demo
"""
