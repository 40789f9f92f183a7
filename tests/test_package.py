import atdata


def test_errors_name_their_location() -> None:
    err = atdata.DecodeError("bad msgpack", shard="a.tar", key="s1", field="image")
    assert "a.tar" in str(err) and "s1" in str(err) and "image" in str(err)
    assert isinstance(err, atdata.AtdataError)
