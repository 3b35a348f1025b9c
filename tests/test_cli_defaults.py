"""The flags of defense_gan/cli.py and the fields of config.Config state each default twice
(absl needs it at definition, the API at construction): they must agree."""

import dataclasses

from absl import flags

from defense_gan import cli, config


def test_every_config_field_is_a_flag_with_the_same_default():
    cli.define_flags()
    fields = dataclasses.fields(config.Config)
    missing = [f.name for f in fields if f.name not in flags.FLAGS]
    assert not missing, f"Config fields without a flag: {missing}"
    differ = {f.name: (flags.FLAGS[f.name].default, f.default) for f in fields
              if flags.FLAGS[f.name].default != f.default}
    assert not differ, f"flag default != Config default: {differ}"
