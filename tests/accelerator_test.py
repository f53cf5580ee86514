"""benchmarks/accelerator.py's report: rates, FLOP rates, fraction of peak."""

from absl.testing import absltest

from benchmarks import accelerator_report as accelerator


def result(step_s, flops=None, **extra):
    return {"first_s": 1.0, "times_s": [step_s] * 3, "flops": flops, **extra}


class AcceleratorReportTest(absltest.TestCase):
    def test_table_gives_rates_flop_rates_and_fraction_of_peak(self):
        results = {
            "omniglot_maml1": {
                "keras_ga JAX vmap": result(0.01, flops=2e11),
                accelerator.REFERENCE: result(0.04, flops=1e11),
                "torch.func loop": {"error": "timed out after 600 s"},
            }
        }
        rows = accelerator.table(results, peak=40.0).splitlines()[2:]
        cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
        ours, reference, failed = cells
        # 100 steps/s, 4x torch.func's 25; 200 GFLOP per step at 100
        # steps/s is 20 TFLOP/s, half of the 40 TFLOP/s peak.
        self.assertEqual(ours[2:7], ["100", "4.00x", "200", "20", "50%"])
        self.assertEqual(reference[2:7], ["25", "1.00x", "100", "2.5", "6.2%"])
        self.assertIn("failed: timed out after 600 s", failed)

    def test_no_peak_no_fraction(self):
        results = {"w": {accelerator.REFERENCE: result(0.5, flops=None)}}
        row = accelerator.table(results, peak=None).splitlines()[2]
        cells = [c.strip() for c in row.strip("|").split("|")]
        self.assertEqual(cells[4:7], ["n/a", "n/a", "n/a"])

    def test_peak_from_the_device_name_unless_given(self):
        self.assertEqual(accelerator.peak_tflops("NVIDIA H200"), 67.0)
        self.assertEqual(accelerator.peak_tflops("NVIDIA H200", 50.0), 50.0)
        self.assertIsNone(accelerator.peak_tflops("Some GPU"))
        self.assertIsNone(accelerator.peak_tflops(None))


if __name__ == "__main__":
    absltest.main()
